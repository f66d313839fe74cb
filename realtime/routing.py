"""The WebSocket application: origin check for browsers, the session of same-origin pages, then the /ws consumer.

Each layer is a plain function of the connection, not a coroutine: it returns the next layer's coroutine, so that
a connection's task runs the consumer's coroutine alone. A coroutine per layer would stay suspended, with its
frame and locals, for as long as the connection is open (~1.5 KiB each, docs/performance.md).
"""

import contextlib
from importlib import import_module
from urllib.parse import urlparse, urlsplit

from channels.routing import ProtocolTypeRouter
from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.http.cookie import parse_cookie

from realtime.consumers import MemoryConsumer

PATH = "ws"


async def raising(error: Exception) -> None:
    """Raise in the connection's task, as Channels' routers do (daphne answers the handshake with 500)."""
    raise error


class ProtocolRouter(ProtocolTypeRouter):
    """Channels' ProtocolTypeRouter, returning the coroutine of the app for the connection's type."""

    _asgi_single_callable = True  # for asgiref: called once with (scope, receive, send), though not a coroutine

    def __call__(self, scope, receive, send):
        application = self.application_mapping.get(scope["type"])
        if application is None:
            return raising(ValueError(f"No application configured for scope type {scope['type']!r}"))
        return application(scope, receive, send)


class BrowserOriginValidator(OriginValidator):
    """Checks the Origin of browser connections; clients that send none authenticate by token alone."""

    _asgi_single_callable = True  # for asgiref: called once with (scope, receive, send), though not a coroutine

    def __call__(self, scope, receive, send):
        # Channels' OriginValidator.__call__, returning the coroutine it would have awaited.
        if scope["type"] != "websocket":
            return raising(ValueError("You cannot use OriginValidator on a non-WebSocket connection"))
        parsed_origin = None
        for header_name, header_value in scope.get("headers", []):
            if header_name == b"origin":
                with contextlib.suppress(UnicodeDecodeError):
                    parsed_origin = urlparse(header_value.decode("latin1"))
        if self.valid_origin(parsed_origin):
            return self.application(scope, receive, send)
        return WebsocketDenier()(scope, receive, send)

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
        self.inner = inner

    def __call__(self, scope, receive, send):
        if same_origin(scope):
            # What Channels' SessionMiddlewareStack gives a WebSocket (which never saves the session), set in
            # daphne's scope: the stack's two coroutines would keep copies of the scope for the connection's life.
            cookie = next((value for name, value in scope.get("headers", ()) if name == b"cookie"), None)
            scope["cookies"] = parse_cookie(cookie.decode("latin1")) if cookie is not None else {}
            session_store = import_module(settings.SESSION_ENGINE).SessionStore
            scope["session"] = session_store(scope["cookies"].get(settings.SESSION_COOKIE_NAME))
        return self.inner(scope, receive, send)


class Route:
    """Channels' URLRouter for the one path there is, without a coroutine or a copy of the scope of its own."""

    def __init__(self, path: str, application) -> None:
        self.path = path  # as URLRouter matches it: after the root path, without leading slashes
        self.application = application

    def __call__(self, scope, receive, send):
        path, root_path = scope["path"], scope.get("root_path", "")
        if path.startswith(root_path) and path[len(root_path) :].lstrip("/") == self.path:
            return self.application(scope, receive, send)
        return raising(ValueError(f"No route found for path {path!r}."))


def websocket_application():
    """Build the WebSocket ASGI app from the current settings."""
    route = Route(PATH, MemoryConsumer.as_asgi())
    return BrowserOriginValidator(SameOriginSession(route), settings.PUOMEMO_WS_ALLOWED_ORIGINS)
