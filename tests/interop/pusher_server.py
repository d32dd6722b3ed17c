r"""A push server speaking the Pusher Channels WebSocket protocol (version 7, as publicly
described), written with Python's `websockets`, not by c1m.

    python3 pusher_server.py [--port 0] [--every-ms 100] [--duration 15] [--silence-ms 2000]
                             [--channel ticks]

ws://127.0.0.1:PORT/app/ANY-KEY?protocol=7&client=c1m&version=0.1 (any key; another path is
answered 404). Every frame is one compact JSON object; `data` sent by the server is a
JSON-encoded string, as in the real protocol:
  on connect  {"event":"pusher:connection_established",
               "data":"{\"socket_id\":\"P.N\",\"activity_timeout\":S}"}   (one line)
              (S = silence-ms in whole seconds, at least 1)
  client      {"event":"pusher:subscribe","data":{"channel":"ticks"}}
  reply       {"event":"pusher_internal:subscription_succeeded","channel":"ticks","data":"{}"}
  push        {"event":"tick","channel":"ticks","data":"{\"seq\":N,\"ts\":MS}"}  (subscribers of
              --channel only, one broadcast every --every-ms)
  client      {"event":"pusher:ping","data":{}} -> {"event":"pusher:pong","data":"{}"}
Keep-alive: after silence-ms with nothing from the client the server sends
{"event":"pusher:ping","data":"{}"} and closes with 4201 "Pong reply not received" if no
message (a pusher:pong or anything else) arrives within silence-ms/2.

Prints `listening PORT` once bound and, after --duration seconds, `stats {json}`.
"""
import asyncio
import json
import os

from websockets.exceptions import ConnectionClosed

from push_loop import arg_parser, dumps, serve_and_push


async def main():
    p = arg_parser()
    p.add_argument("--silence-ms", type=int, default=2000)
    p.add_argument("--channel", default="ticks")
    a = p.parse_args()
    silence = a.silence_ms / 1000
    stats = dict(accepted=0, subscribed=0, closed_for_silence=0, pushed=0,
                 pings_sent=0, pongs=0, client_pings=0)
    subscribers = set()

    def process_request(connection, request):
        if not request.path.startswith("/app/"):
            return connection.respond(404, "Pusher path is /app/KEY\n")
        return None

    async def handler(ws):
        stats["accepted"] += 1
        established = {"socket_id": f"{os.getpid()}.{stats['accepted']}",
                       "activity_timeout": max(1, a.silence_ms // 1000)}
        await ws.send(dumps({"event": "pusher:connection_established", "data": dumps(established)}))
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), silence)
                except TimeoutError:
                    stats["pings_sent"] += 1
                    await ws.send(dumps({"event": "pusher:ping", "data": "{}"}))
                    try:
                        raw = await asyncio.wait_for(ws.recv(), silence / 2)
                    except TimeoutError:
                        stats["closed_for_silence"] += 1
                        await ws.close(4201, "Pong reply not received")
                        return
                try:
                    msg = json.loads(raw)
                    event = msg.get("event")
                except (ValueError, AttributeError):
                    continue
                if event == "pusher:pong":
                    stats["pongs"] += 1
                elif event == "pusher:ping":
                    stats["client_pings"] += 1
                    await ws.send(dumps({"event": "pusher:pong", "data": "{}"}))
                elif event == "pusher:subscribe":
                    data = msg.get("data")
                    if isinstance(data, str):
                        data = json.loads(data)
                    channel = (data or {}).get("channel")
                    if not channel:
                        continue
                    reply = {"event": "pusher_internal:subscription_succeeded",
                             "channel": channel, "data": "{}"}
                    await ws.send(dumps(reply))
                    if channel == a.channel and ws not in subscribers:
                        subscribers.add(ws)
                        stats["subscribed"] += 1
                elif event == "pusher:unsubscribe":
                    subscribers.discard(ws)
        except ConnectionClosed:
            pass
        finally:
            subscribers.discard(ws)

    def tick(seq, ts):
        data = dumps({"seq": seq, "ts": ts})
        return dumps({"event": "tick", "channel": a.channel, "data": data})

    await serve_and_push(a, handler, process_request, subscribers, stats, tick)


asyncio.run(main())
