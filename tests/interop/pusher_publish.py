"""Publishes ticks to a Pusher-protocol server through its HTTP API (the Pusher Channels REST
API, signed as its public description says), for checking c1m's `pusher` preset against a
real server such as sockudo. Not part of `cargo test`: sockudo takes ~25 minutes to build.

    python3 pusher_publish.py --url http://127.0.0.1:6001 --app-id app-id --key app-key \
        --secret app-secret [--channel ticks] [--every-ms 100] [--count 50]

Each tick is event `tick` on the channel, data `{"seq":N,"ts":MS}` (a JSON string, as the
protocol carries it). Prints `published N` at the end, and the first error it meets.
"""
import argparse
import hashlib
import hmac
import json
import time
import urllib.request


def publish(a, seq):
    data = json.dumps({"seq": seq, "ts": int(time.time() * 1000)}, separators=(",", ":"))
    body = json.dumps({"name": "tick", "channel": a.channel, "data": data}).encode()
    path = f"/apps/{a.app_id}/events"
    query = {
        "auth_key": a.key,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        "body_md5": hashlib.md5(body).hexdigest(),
    }
    signed = "&".join(f"{k}={query[k]}" for k in sorted(query))
    to_sign = f"POST\n{path}\n{signed}"
    query["auth_signature"] = hmac.new(a.secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    req = urllib.request.Request(
        f"{a.url}{path}?{qs}", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:6001")
    p.add_argument("--app-id", default="app-id")
    p.add_argument("--key", default="app-key")
    p.add_argument("--secret", default="app-secret")
    p.add_argument("--channel", default="ticks")
    p.add_argument("--every-ms", type=int, default=100)
    p.add_argument("--count", type=int, default=50)
    a = p.parse_args()
    for seq in range(1, a.count + 1):
        publish(a, seq)
        time.sleep(a.every_ms / 1000)
    print(f"published {a.count}", flush=True)


main()
