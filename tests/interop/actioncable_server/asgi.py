"""The ASGI app: Action Cable at /cable with one channel, TickChannel; `stats` counts what the
launcher reports. django.setup() must have run (the launcher does it)."""
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

from actioncable import ActionCableConsumer, CableChannel, cable_channel_register

GROUP = "ticks"
stats = dict(accepted=0, subscribed=0, closed_for_silence=0, pushed=0)


@cable_channel_register
class TickChannel(CableChannel):
    r"""{"command":"subscribe","identifier":"{\"channel\":\"TickChannel\"}"} joins the group."""

    def __init__(self, consumer, identifier_key, params=None):
        self.consumer = consumer
        self.identifier_key = identifier_key
        self.params = params or {}

    async def subscribe(self):
        await self.consumer.subscribe_group(GROUP, self)
        stats["subscribed"] += 1

    async def unsubscribe(self):
        await self.consumer.unsubscribe_group(GROUP, self)


class CountingConsumer(ActionCableConsumer):
    """The library's consumer, unchanged but for counting."""

    async def connect(self):
        stats["accepted"] += 1
        await super().connect()

    async def action_cable_message(self, event):
        stats["pushed"] += len(self.group_channel_instance_map.get(event["group"], ()))
        await super().action_cable_message(event)


async def not_found(scope, receive, send):
    """Plain HTTP: 404 (uvicorn hands HTTP requests to the app too)."""
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"Action Cable is at /cable\n"})


application = ProtocolTypeRouter(
    {"http": not_found, "websocket": URLRouter([path("cable", CountingConsumer.as_asgi())])}
)
