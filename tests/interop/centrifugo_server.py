"""A push server speaking Centrifugo's client protocol (the JSON protocol of Centrifugo
v4/v5/v6, as publicly documented), written with Python's `websockets`, not by c1m.

    python3 centrifugo_server.py [--port 0] [--every-ms 100] [--duration 15] [--ping-s 1]
                                 [--silence-ms 2000] [--channel ticks]

ws://127.0.0.1:PORT/connection/websocket (another path is answered 404). One compact JSON
object per frame (real Centrifugo may batch several, newline-separated; this server never does):
  client  {"id":1,"connect":{"token":"..."}}        (any non-empty token is accepted)
  reply   {"id":1,"connect":{"client":"UUID","version":"0.0.0","ping":P,"pong":true}}
          (empty or missing token: closed 3500 "invalid token")
  client  {"id":2,"subscribe":{"channel":"ticks"}}
  reply   {"id":2,"subscribe":{}}         (any channel; a second subscribe to it: error 105)
  push    {"push":{"channel":"ticks","pub":{"data":{"seq":N,"ts":MS}}}}  (--channel subscribers)
  ping    {}  every P = --ping-s seconds after connect; the client must answer {}
A client that has not answered a ping by the next one is closed 3012 "no pong" (so the
silence allowed is 2 x ping-s; --silence-ms N sets ping-s to N/2000, at least 1: Centrifugo's
ping interval is whole seconds). A command before connect is closed 3501 "bad request"; any
other command with an id is answered {"id":N,"error":{"code":104,"message":"method not found"}}.

Prints `listening PORT` once bound and, after --duration seconds, `stats {json}`.
"""
import asyncio
import json
import uuid

from websockets.exceptions import ConnectionClosed

from push_loop import arg_parser, dumps, serve_and_push


async def main():
    p = arg_parser()
    p.add_argument("--ping-s", type=int, default=1)
    p.add_argument("--silence-ms", type=int, help="the common flag: sets --ping-s to half of it")
    p.add_argument("--channel", default="ticks")
    a = p.parse_args()
    if a.silence_ms is not None:
        a.ping_s = max(1, a.silence_ms // 2000)
    stats = dict(accepted=0, connected=0, subscribed=0, closed_for_silence=0, pushed=0,
                 pings=0, pongs=0, rejected_tokens=0)
    subscribers = set()

    def process_request(connection, request):
        if request.path.split("?")[0] != "/connection/websocket":
            return connection.respond(404, "Centrifugo path is /connection/websocket\n")
        return None

    async def pinger(ws, state):
        while True:
            await asyncio.sleep(a.ping_s)
            if state["awaiting_pong"]:
                stats["closed_for_silence"] += 1
                await ws.close(3012, "no pong")
                return
            state["awaiting_pong"] = True
            stats["pings"] += 1
            await ws.send("{}")

    async def handler(ws):
        stats["accepted"] += 1
        state = {"awaiting_pong": False}
        channels = set()
        ping_task = None
        try:
            async for raw in ws:
                try:
                    cmd = json.loads(raw)
                except ValueError:
                    await ws.close(3501, "bad request")
                    return
                if cmd == {}:
                    stats["pongs"] += 1
                    state["awaiting_pong"] = False
                    continue
                cid = cmd.get("id")
                if "connect" in cmd and ping_task is None:
                    if not (cmd["connect"] or {}).get("token"):
                        stats["rejected_tokens"] += 1
                        await ws.close(3500, "invalid token")
                        return
                    reply = {"client": str(uuid.uuid4()), "version": "0.0.0",
                             "ping": a.ping_s, "pong": True}
                    await ws.send(dumps({"id": cid, "connect": reply}))
                    stats["connected"] += 1
                    ping_task = asyncio.create_task(pinger(ws, state))
                elif ping_task is None:
                    await ws.close(3501, "bad request")
                    return
                elif "subscribe" in cmd:
                    channel = (cmd["subscribe"] or {}).get("channel")
                    if not channel:
                        await ws.close(3501, "bad request")
                        return
                    if channel in channels:
                        err = {"code": 105, "message": "already subscribed"}
                        await ws.send(dumps({"id": cid, "error": err}))
                        continue
                    channels.add(channel)
                    await ws.send(dumps({"id": cid, "subscribe": {}}))
                    if channel == a.channel:
                        subscribers.add(ws)
                        stats["subscribed"] += 1
                elif "unsubscribe" in cmd:
                    channel = (cmd["unsubscribe"] or {}).get("channel")
                    channels.discard(channel)
                    if channel == a.channel:
                        subscribers.discard(ws)
                    await ws.send(dumps({"id": cid, "unsubscribe": {}}))
                elif cid is not None:
                    err = {"code": 104, "message": "method not found"}
                    await ws.send(dumps({"id": cid, "error": err}))
        except ConnectionClosed:
            pass
        finally:
            subscribers.discard(ws)
            if ping_task is not None:
                ping_task.cancel()

    def tick(seq, ts):
        return dumps({"push": {"channel": a.channel, "pub": {"data": {"seq": seq, "ts": ts}}}})

    await serve_and_push(a, handler, process_request, subscribers, stats, tick)


asyncio.run(main())
