"""The naive Channels pattern, for the fan-out benchmark: RedisChannelLayer, group_send, send_json per consumer.

Served by daphne: `daphne bench.naive_channels:application` (REDIS_URL names the Redis).
`/bare` is a consumer that only accepts: the idle-memory baseline.
"""

import os

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",  # noqa: S106
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                # Room for the whole burst in each consumer's channel: at the default 100 the
                # layer drops the rest, and the benchmark would time fewer deliveries.
                "CONFIG": {"hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")], "capacity": 10_000},
            }
        },
    )
    import django

    django.setup()

from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from channels.routing import URLRouter
from django.urls import path

GROUP = "bench"


class NaiveConsumer(AsyncJsonWebsocketConsumer):
    """The Channels tutorial's shape: join a group, relay each group message with send_json."""

    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def bench_event(self, event: dict) -> None:
        await self.send_json(event["frame"])


class BareConsumer(AsyncWebsocketConsumer):
    """Accepts and holds the connection: what a Channels WebSocket costs with nothing on it."""

    channel_layer_alias = "__none__"


application = URLRouter([path("ws", NaiveConsumer.as_asgi()), path("bare", BareConsumer.as_asgi())])
