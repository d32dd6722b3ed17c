"""Push servers written with Python's `websockets`, not by c1m, in the shapes people run, for
the client's loss accounting and its failure when nothing can be timed.

    python3 push_server.py --mode MODE [--port 0] [--every-ms 100] [--duration 10]

MODE:
  running-seq     broadcasts {"seq": N, "ts": ms} to every connection every --every-ms from the
                  start, whether or not anyone listens (a client joins mid-stream)
  per-connection  each connection gets its own loop sending {"ts": ms} every --every-ms (the
                  pattern the websockets documentation shows): no message is a broadcast
  nested          broadcasts {"event": "tick", "data": {"sent_at": ms}}: a timestamp c1m cannot
                  find without being told where it is
  reject          answers every upgrade 401 with a reason in the body
  guarded         running-seq, but only for upgrades that carry `Authorization: Bearer t0k` and
                  `Origin: https://app.example` (else 401/403) and offer subprotocol c1m.v1
  close-reason    accepts, then closes with 4406 and a reason text
  tls             not WebSocket at all: answers like a TLS server (an alert record) and closes
  iso             broadcasts RFC 3339 times, alternately bare (2026-11-29T15:00:00.123Z) and as
                  {"ts": "<ISO>"}
  subscribe       pushes running-seq only to connections that sent
                  {"type":"subscribe","channel":"ticks"}, after answering {"type":"subscribed"}
  silence         running-seq, but closes (4000) a connection that sent nothing for 2 s
  unique-id       running-seq, but each upgrade needs ?id=N unique among the open connections
                  (409 if taken, 400 if missing) and a header X-Conn equal to it (400)

--cert FILE --key FILE serve any mode over TLS (wss://).

Prints `listening PORT` once bound and exits after --duration seconds.
"""
import argparse
import asyncio
import json
import ssl
import time
from datetime import datetime, timezone
from http import HTTPStatus
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import broadcast, serve


def now_ms():
    return int(time.time() * 1000)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument(
        "--mode",
        required=True,
        choices=[
            "running-seq",
            "per-connection",
            "nested",
            "reject",
            "guarded",
            "close-reason",
            "tls",
            "iso",
            "subscribe",
            "silence",
            "unique-id",
        ],
    )
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--every-ms", type=int, default=100)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--cert")
    p.add_argument("--key")
    a = p.parse_args()
    tls = None
    if a.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(a.cert, a.key)
    every = a.every_ms / 1000

    if a.mode == "tls":
        await tls_like(a)
        return

    ids = set()
    subscribed = set()

    def process_request(connection, request):
        if a.mode == "unique-id":
            query = parse_qs(urlparse(request.path).query)
            conn_id = query.get("id", [None])[0]
            if conn_id is None:
                return connection.respond(HTTPStatus.BAD_REQUEST, "missing ?id=\n")
            if request.headers.get("X-Conn") != conn_id:
                return connection.respond(HTTPStatus.BAD_REQUEST, "X-Conn must equal ?id=\n")
            if conn_id in ids:
                return connection.respond(HTTPStatus.CONFLICT, f"id {conn_id} is taken\n")
            ids.add(conn_id)
            connection.c1m_id = conn_id
            return None
        if a.mode == "reject":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "missing bearer token\n")
        if a.mode == "guarded":
            if request.headers.get("Authorization") != "Bearer t0k":
                return connection.respond(HTTPStatus.UNAUTHORIZED, "missing bearer token\n")
            if request.headers.get("Origin") != "https://app.example":
                return connection.respond(HTTPStatus.FORBIDDEN, "origin not allowed\n")
        return None

    async def handler(ws):
        if a.mode == "close-reason":
            await ws.close(4406, "Subprotocol not acceptable")
            return
        if a.mode == "unique-id":
            await ws.wait_closed()
            ids.discard(ws.c1m_id)
            return
        if a.mode == "subscribe":
            async for msg in ws:
                if json.loads(msg) == {"type": "subscribe", "channel": "ticks"}:
                    await ws.send(json.dumps({"type": "subscribed"}))
                    subscribed.add(ws)
            subscribed.discard(ws)
            return
        if a.mode == "silence":
            await silent_closer(ws)
            return
        if a.mode != "per-connection":
            await ws.wait_closed()
            return
        try:
            while True:
                await ws.send(json.dumps({"ts": now_ms()}))
                await asyncio.sleep(every)
        except Exception:
            return

    subprotocols = ["c1m.v1"] if a.mode == "guarded" else None
    async with serve(
        handler,
        "127.0.0.1",
        a.port,
        process_request=process_request,
        subprotocols=subprotocols,
        ssl=tls,
    ) as server:
        print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
        end = time.monotonic() + a.duration
        seq = 0
        while time.monotonic() < end:
            await asyncio.sleep(every)
            seq += 1
            if a.mode in ("running-seq", "guarded", "silence", "unique-id"):
                broadcast(server.connections, json.dumps({"seq": seq, "ts": now_ms()}))
            elif a.mode == "subscribe":
                broadcast(subscribed, json.dumps({"seq": seq, "ts": now_ms()}))
            elif a.mode == "iso":
                iso = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
                iso = iso.replace("+00:00", "Z")
                broadcast(server.connections, iso if seq % 2 else json.dumps({"ts": iso}))
            elif a.mode == "nested":
                msg = {"event": "tick", "data": {"sent_at": now_ms()}}
                broadcast(server.connections, json.dumps(msg))


async def silent_closer(ws):
    """Closes the connection once the client has said nothing for 2 s."""
    last = time.monotonic()

    async def listen():
        nonlocal last
        async for _ in ws:
            last = time.monotonic()

    reader = asyncio.ensure_future(listen())
    try:
        while not reader.done():
            if time.monotonic() - last > 2:
                await ws.close(4000, "silent for 2 s")
                return
            await asyncio.sleep(0.1)
    finally:
        reader.cancel()


async def tls_like(a):
    """What a TLS server answers to plain HTTP: a fatal alert record, then the end."""

    async def answer(reader, writer):
        await reader.read(1024)
        writer.write(b"\x15\x03\x03\x00\x02\x02\x46")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", a.port)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.sleep(a.duration)


asyncio.run(main())
