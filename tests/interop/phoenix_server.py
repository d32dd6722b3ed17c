"""A push server speaking Phoenix Channels' WebSocket protocol (JSON serializer V2, what
phoenix.js uses), written with Python's `websockets`, not by c1m.

    python3 phoenix_server.py [--port 0] [--every-ms 100] [--duration 15] [--silence-ms 2000]
                              [--topic room:lobby]

ws://127.0.0.1:PORT/socket/websocket?vsn=2.0.0 (another path is answered 404, a missing or
other vsn 400: this server has only the V2 serializer). Every frame is a compact JSON array
[join_ref, ref, topic, event, payload]:
  client  ["1","1","room:lobby","phx_join",{}]
  reply   ["1","1","room:lobby","phx_reply",{"status":"ok","response":{}}]
          another topic:
          ["1","1","room:other","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]
  client  [null,"5","phoenix","heartbeat",{}]
  reply   [null,"5","phoenix","phx_reply",{"status":"ok","response":{}}]
  push    [null,null,"room:lobby","tick",{"seq":N,"ts":MS}]  (joined connections only)
  client  ["1","9","room:lobby","phx_leave",{}] -> ok reply, no more pushes
Keep-alive: like Phoenix's transport timeout, a connection from which nothing arrives for
silence-ms is closed (code 1000, no reason).

Prints `listening PORT` once bound and, after --duration seconds, `stats {json}`.
"""
import asyncio
import json
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed

from push_loop import arg_parser, dumps, serve_and_push


OK = {"status": "ok", "response": {}}


async def main():
    p = arg_parser()
    p.add_argument("--silence-ms", type=int, default=2000)
    p.add_argument("--topic", default="room:lobby")
    a = p.parse_args()
    stats = dict(accepted=0, subscribed=0, closed_for_silence=0, pushed=0, heartbeats=0)
    joined = set()

    def process_request(connection, request):
        url = urlsplit(request.path)
        if url.path != "/socket/websocket":
            return connection.respond(404, "Phoenix socket path is /socket/websocket\n")
        if not parse_qs(url.query).get("vsn", [""])[0].startswith("2."):
            return connection.respond(400, "only the V2 serializer: add ?vsn=2.0.0\n")
        return None

    async def handler(ws):
        stats["accepted"] += 1
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), a.silence_ms / 1000)
                except TimeoutError:
                    stats["closed_for_silence"] += 1
                    await ws.close(1000)
                    return
                try:
                    join_ref, ref, topic, event, _payload = json.loads(raw)
                except (ValueError, TypeError):
                    continue
                if topic == "phoenix" and event == "heartbeat":
                    stats["heartbeats"] += 1
                    await ws.send(dumps([None, ref, "phoenix", "phx_reply", OK]))
                elif event == "phx_join":
                    if topic != a.topic:
                        err = {"status": "error", "response": {"reason": "unmatched topic"}}
                        await ws.send(dumps([join_ref, ref, topic, "phx_reply", err]))
                        continue
                    await ws.send(dumps([join_ref, ref, topic, "phx_reply", OK]))
                    if ws not in joined:
                        joined.add(ws)
                        stats["subscribed"] += 1
                elif event == "phx_leave":
                    joined.discard(ws)
                    await ws.send(dumps([join_ref, ref, topic, "phx_reply", OK]))
        except ConnectionClosed:
            pass
        finally:
            joined.discard(ws)

    def tick(seq, ts):
        return dumps([None, None, a.topic, "tick", {"seq": seq, "ts": ts}])

    await serve_and_push(a, handler, process_request, joined, stats, tick)


asyncio.run(main())
