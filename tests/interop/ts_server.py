"""A push server written with Python's `websockets`, not by c1m: it broadcasts the bare epoch
milliseconds as text, as the 2015 Netty server did. Used to check that c1m's client measures
any server that sends a timestamp.

    python3 ts_server.py --port 0 --every-ms 200 --count 5 [--json]

Prints `listening PORT` once bound, broadcasts `--count` times once `--wait-conns` clients are
connected, then exits. Bounded: it gives up after --timeout seconds.
"""
import argparse
import asyncio
import json
import sys
import time

from websockets.asyncio.server import broadcast, serve


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--every-ms", type=int, default=200)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--wait-conns", type=int, default=1)
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--json", action="store_true", help="send {seq, time} JSON instead of bare ms")
    a = p.parse_args()

    async def handler(ws):
        await ws.wait_closed()

    deadline = time.monotonic() + a.timeout
    async with serve(handler, "127.0.0.1", a.port) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening {port}", flush=True)
        while len(server.connections) < a.wait_conns:
            if time.monotonic() > deadline:
                sys.exit("timed out waiting for clients")
            await asyncio.sleep(0.02)
        for seq in range(1, a.count + 1):
            await asyncio.sleep(a.every_ms / 1000)
            ms = int(time.time() * 1000)
            msg = json.dumps({"seq": seq, "time": ms}) if a.json else str(ms)
            broadcast(server.connections, msg)
        print(f"sent {a.count}", flush=True)
        # Let the last frames drain before closing.
        await asyncio.sleep(0.5)


asyncio.run(main())
