"""The WebSocket application: origin check for browsers, the session of same-origin pages, then the /ws consumer."""

from urllib.parse import urlsplit

from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from channels.sessions import SessionMiddlewareStack
from django.conf import settings
from django.urls import path

from realtime.consumers import MemoryConsumer


class BrowserOriginValidator(OriginValidator):
    """Checks the Origin of browser connections; clients that send none authenticate by token alone."""

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)


def same_origin(scope) -> bool:
    """Whether a browser opened the socket from a page of this site: its Origin is the Host it asked, or trusted."""
    headers = dict(scope.get("headers", ()))
    origin = headers.get(b"origin", b"").decode("latin-1").lower()
    host = headers.get(b"host", b"").decode("latin-1").lower()
    if not origin or not host:
        return False
    if origin in {trusted.lower() for trusted in settings.CSRF_TRUSTED_ORIGINS}:
        return True
    parsed = urlsplit(origin)
    default_port = {"http": ":80", "https": ":443"}.get(parsed.scheme)
    # Browsers leave a default port out of Origin; a Host header may name it.
    return default_port is not None and parsed.netloc == host.removesuffix(default_port)


class SameOriginSession:
    """Loads the session cookie only for a same-origin browser page, so that a cross-site page cannot ride it."""

    def __init__(self, inner) -> None:
        self.with_session = SessionMiddlewareStack(inner)
        self.inner = inner

    async def __call__(self, scope, receive, send):
        app = self.with_session if same_origin(scope) else self.inner
        return await app(scope, receive, send)


def websocket_application():
    """Build the WebSocket ASGI app from the current settings."""
    router = URLRouter([path("ws", MemoryConsumer.as_asgi())])
    return BrowserOriginValidator(SameOriginSession(router), settings.PUOMEMO_WS_ALLOWED_ORIGINS)
