r"""An Action Cable push server: PyPI's `django-actioncable` (the Action Cable protocol on Django
Channels) served by `uvicorn`, not by c1m. The Django project is ./actioncable_server/.

    python3 actioncable_server.py [--port 0] [--every-ms 100] [--duration 15] [--silence-ms N]

ws://127.0.0.1:PORT/cable, subprotocol `actioncable-v1-json` (the library always answers with
it, so a strict client must offer it). Bytes are the library's own (compact JSON, keys sorted,
except the welcome):
  on connect  {"type": "welcome"}
  client      {"command":"subscribe","identifier":"{\"channel\":\"TickChannel\"}"}
  reply       {"identifier":"{\"channel\":\"TickChannel\"}","type":"confirm_subscription"}
  push        {"identifier":"{\"channel\":\"TickChannel\"}","message":{"seq":N,"ts":MS}}
              (one group_send every --every-ms to the channel's subscribers)
  ping        {"message":EPOCH_SECONDS,"type":"ping"}  every 5 s, from connect on
Action Cable clients send no heartbeat and the library closes nobody for silence: --silence-ms
is accepted for the common contract and ignored; closed_for_silence stays 0.

Prints `listening PORT` once bound and, after --duration seconds, `stats {json}`.
"""
import argparse
import asyncio
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "actioncable_server.settings")

import django  # noqa: E402
import uvicorn  # noqa: E402

django.setup()
from actioncable.utils import async_cable_broadcast  # noqa: E402

from actioncable_server.asgi import GROUP, application, stats  # noqa: E402


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--every-ms", type=int, default=100)
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--silence-ms", type=int, default=2000, help="ignored (no client heartbeat)")
    a = p.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", a.port))
    config = uvicorn.Config(application, lifespan="off", ws="websockets-sansio",
                            ws_per_message_deflate=False, ws_ping_interval=None,
                            log_level="warning", backlog=4096)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    print(f"listening {sock.getsockname()[1]}", flush=True)

    end = time.monotonic() + a.duration
    seq = 0
    while time.monotonic() < end:
        await asyncio.sleep(a.every_ms / 1000)
        seq += 1
        await async_cable_broadcast(GROUP, {"seq": seq, "ts": int(time.time() * 1000)})
    server.should_exit = True  # closes the connections (1012) after the last deliveries
    await serving
    print("stats " + json.dumps(stats, separators=(",", ":")), flush=True)


asyncio.run(main())
