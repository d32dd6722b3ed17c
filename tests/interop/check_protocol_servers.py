"""Checks the six protocol servers (socketio_server.js, graphql_ws_server.js,
actioncable_server.py, pusher_server.py, phoenix_server.py, centrifugo_server.py) with plain
`websockets` clients that speak each protocol by hand, the way c1m's presets do:

  - a client that subscribes and does the protocol's keep-alive gets the broadcasts and stays
    connected for more than 3 x silence;
  - a client that subscribes and then stays silent is closed by the server (except Action
    Cable, whose clients send no heartbeat);
  - every push is a broadcast: one seq has one ts on every connection;
  - the server's `stats` line agrees.

    python3 check_protocol_servers.py [NAME ...]     # all six by default; ~15 s, loopback only

Ends with `N passed, N failed` and exits non-zero on a failure.
"""
import asyncio
import json
import os
import re
import sys
import time

from websockets.asyncio.client import connect

HERE = os.path.dirname(os.path.abspath(__file__))
SILENCE_MS = 1000
SUB = '{"id":"1","type":"subscribe","payload":{"query":"subscription { tick { seq ts } }"}}'
AC_ID = '{\\"channel\\":\\"TickChannel\\"}'


def path_get(msg, *keys):
    try:
        for k in keys:
            msg = msg[k]
        return msg
    except (KeyError, IndexError, TypeError):
        return None


def from_regex(pattern):
    def extract(text):
        m = re.search(pattern, text)
        return (int(m.group(1)), int(m.group(2))) if m else None
    return extract


def from_json(*keys):
    def extract(text):
        d = path_get(json.loads(text), *keys)
        return (d["seq"], d["ts"]) if isinstance(d, dict) and "ts" in d else None
    return extract


# name: command, path, subprotocols, sent on open, `then` {exact text: answer} (part of
#       subscribing: both clients answer), keep-alive replies {exact text: answer},
#       heartbeat text (sent every silence/3 by the good client), (seq, ts) extractor,
#       silence before the silent client must be closed (ms; None: never)
PROTOCOLS = {
    "socketio": dict(
        cmd=["node", "socketio_server.js"], path="/socket.io/?EIO=4&transport=websocket",
        sub=None, send=["40"], reply={"2": "3"}, heartbeat=None,
        extract=from_regex(r'^42\["tick",\{"seq":(\d+),"ts":(\d+)'), silence=SILENCE_MS),
    "graphql-ws": dict(
        cmd=["node", "graphql_ws_server.js"], path="/graphql", sub=["graphql-transport-ws"],
        send=['{"type":"connection_init"}'], then={'{"type":"connection_ack"}': SUB},
        reply={'{"type":"ping"}': '{"type":"pong"}'},
        heartbeat=None, extract=from_json("payload", "data", "tick"), silence=SILENCE_MS),
    "actioncable": dict(
        cmd=[sys.executable, "actioncable_server.py"], path="/cable",
        sub=["actioncable-v1-json"],
        send=['{"command":"subscribe","identifier":"' + AC_ID + '"}'], reply={},
        heartbeat=None, extract=from_json("message"), silence=None),
    "pusher": dict(
        cmd=[sys.executable, "pusher_server.py"], path="/app/c1m-key?protocol=7&client=c1m",
        sub=None, send=['{"event":"pusher:subscribe","data":{"channel":"ticks"}}'],
        reply={'{"event":"pusher:ping","data":"{}"}': '{"event":"pusher:pong","data":"{}"}'},
        heartbeat=None, extract=from_regex(r'\\"seq\\":(\d+),\\"ts\\":(\d+)'),
        silence=SILENCE_MS * 3 // 2),
    "phoenix": dict(
        cmd=[sys.executable, "phoenix_server.py"], path="/socket/websocket?vsn=2.0.0",
        sub=None, send=['["1","1","room:lobby","phx_join",{}]'], reply={},
        heartbeat='[null,"{n}","phoenix","heartbeat",{}]', extract=from_json(4),
        silence=SILENCE_MS),
    "centrifugo": dict(
        cmd=[sys.executable, "centrifugo_server.py"], path="/connection/websocket", sub=None,
        send=['{"id":1,"connect":{"token":"t0k"}}', '{"id":2,"subscribe":{"channel":"ticks"}}'],
        reply={"{}": "{}"}, heartbeat=None, extract=from_json("push", "pub", "data"),
        silence=2000),  # --ping-s 1: closed at the second ping without a pong
}


async def client(port, p, good, secs):
    """Returns (ticks {seq: ts}, close code or None, seconds until closed or None)."""
    ticks, t0, n = {}, time.monotonic(), 0
    async with connect(f"ws://127.0.0.1:{port}{p['path']}", subprotocols=p["sub"],
                       ping_interval=None) as ws:
        for m in p["send"]:
            await ws.send(m)

        async def beat():
            nonlocal n
            while good and p["heartbeat"]:
                await asyncio.sleep(SILENCE_MS / 3000)
                n += 1
                await ws.send(p["heartbeat"].replace("{n}", str(n)))

        task = asyncio.create_task(beat())
        try:
            while (left := secs - (time.monotonic() - t0)) > 0:
                try:
                    text = await asyncio.wait_for(ws.recv(), left)
                except TimeoutError:
                    break
                if text in p.get("then", {}):
                    await ws.send(p["then"][text])
                if good and text in p["reply"]:
                    await ws.send(p["reply"][text])
                got = p["extract"](text)
                if got:
                    ticks[got[0]] = got[1]
        except Exception:
            return ticks, ws.close_code, time.monotonic() - t0
        finally:
            task.cancel()
    return ticks, None, None


async def check(name, results):
    p = PROTOCOLS[name]
    window = 3.5 * max(SILENCE_MS, p["silence"] or 0) / 1000
    proc = await asyncio.create_subprocess_exec(
        *p["cmd"], "--port", "0", "--every-ms", "100", "--duration", str(window + 2),
        "--silence-ms", str(SILENCE_MS if name != "centrifugo" else 2000),
        cwd=HERE, stdout=asyncio.subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        port = int(line.split()[1])
        (good, gcode, _), (silent, scode, sgone) = await asyncio.gather(
            client(port, p, True, window), client(port, p, False, window))
        out = (await asyncio.wait_for(proc.stdout.read(), window + 10)).decode()
        stats = json.loads(out.split("stats ", 1)[1])
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()

    def expect(what, ok, detail=""):
        results.append(ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {what} {detail}")

    now = time.time() * 1000
    expect("good client got the broadcasts", len(good) >= window * 10 * 0.7, f"({len(good)})")
    expect("good client stayed connected", gcode is None, f"(closed {gcode})")
    expect("seq has no gaps for the good client",
           sorted(good) == list(range(min(good), max(good) + 1)) if good else False)
    expect("ts is epoch ms", all(abs(ts - now) < 60_000 for ts in good.values()))
    both = set(good) & set(silent)
    expect("same (seq, ts) on both connections",
           bool(both) and all(good[s] == silent[s] for s in both), f"({len(both)} shared)")
    expect("silent client got pushes before it was judged", len(silent) >= 3, f"({len(silent)})")
    if p["silence"] is None:
        expect("silent client kept (no heartbeat in this protocol)", scode is None)
        expect("stats closed_for_silence == 0", stats["closed_for_silence"] == 0)
    else:
        lo, hi = p["silence"] * 0.4 / 1000, p["silence"] * 1.6 / 1000
        expect("silent client closed in time", scode is not None and lo <= sgone <= hi,
               f"(code {scode} after {sgone and round(sgone, 2)} s, window {lo}-{hi} s)")
        expect("stats closed_for_silence == 1", stats["closed_for_silence"] == 1)
    expect("stats accepted == subscribed == 2",
           stats["accepted"] == 2 and stats["subscribed"] == 2, json.dumps(stats))


async def main():
    names = sys.argv[1:] or list(PROTOCOLS)
    results = []
    await asyncio.gather(*(check(n, results) for n in names))
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


asyncio.run(main())
