"""The WebSocket application: origin check for browsers, then the /ws consumer."""

from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.urls import path

from realtime.consumers import MemoryConsumer


class BrowserOriginValidator(OriginValidator):
    """Checks the Origin of browser connections; clients that send none authenticate by token alone."""

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)


def websocket_application():
    """Build the WebSocket ASGI app from the current settings."""
    router = URLRouter([path("ws", MemoryConsumer.as_asgi())])
    return BrowserOriginValidator(router, settings.PUOMEMO_WS_ALLOWED_ORIGINS)
