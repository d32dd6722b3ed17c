"""A client written with Python's `websockets`, not by c1m: it connects to a c1m server, waits
for `--count` messages and prints each as a JSON line {"text": ..., "recv_us": ...}, after
`connected` and `extensions VALUE` (the server's Sec-WebSocket-Extensions answer; websockets
offers permessage-deflate by default).

    python3 recv_client.py ws://127.0.0.1:PORT/ --count 2
    python3 recv_client.py wss://127.0.0.1:PORT/ --count 2 --ca cert.pem
"""
import argparse
import asyncio
import json
import ssl
import time

from websockets.asyncio.client import connect


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--ca", help="PEM file of the CA (or self-signed certificate) to trust")
    a = p.parse_args()
    tls = ssl.create_default_context(cafile=a.ca) if a.ca else None
    async with connect(a.url, ssl=tls) as ws:
        print("connected", flush=True)
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        print(f"extensions {extensions}", flush=True)
        for _ in range(a.count):
            msg = await asyncio.wait_for(ws.recv(), a.timeout)
            print(json.dumps({"text": msg, "recv_us": time.time_ns() // 1000}), flush=True)


asyncio.run(main())
