"""What the protocol servers written here (pusher_server.py, phoenix_server.py,
centrifugo_server.py) share: their common flags, compact JSON, and the loop that serves, says
`listening PORT`, broadcasts a tick to the subscribed connections every --every-ms for
--duration seconds, and ends with `stats {json}`.
"""
import argparse
import asyncio
import json
import time

from websockets.asyncio.server import broadcast, serve


def now_ms():
    return int(time.time() * 1000)


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


def arg_parser():
    """The flags every protocol server takes; each adds its own."""
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--every-ms", type=int, default=100)
    p.add_argument("--duration", type=float, default=15)
    return p


async def serve_and_push(a, handler, process_request, subscribers, stats, tick):
    """Serves on 127.0.0.1:--port; every --every-ms writes `tick(seq, ts_ms)` to every
    connection in `subscribers` (one broadcast: the same seq and ts for all), counting them in
    stats["pushed"]."""
    async with serve(handler, "127.0.0.1", a.port, process_request=process_request,
                     ping_interval=None, compression=None) as server:
        print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
        end = time.monotonic() + a.duration
        seq = 0
        while time.monotonic() < end:
            await asyncio.sleep(a.every_ms / 1000)
            seq += 1
            stats["pushed"] += len(subscribers)
            broadcast(subscribers, tick(seq, now_ms()))
        print("stats " + dumps(stats), flush=True)
