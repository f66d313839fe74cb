"""While the process drains on SIGTERM, every HTTP response says `Connection: close` (puomemo/asgi.py)."""

from collections.abc import Awaitable, Callable
from typing import Any

# Set by `manage.py serve` when it starts draining: a proxy then closes each keep-alive connection after the
# response it reads, instead of the process closing idle ones under a request the proxy may be writing.
draining = False


def close_when_draining(app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Wrap an HTTP ASGI application: its responses carry `Connection: close` while the process drains."""

    async def wrapped(scope: dict, receive: Callable, send: Callable) -> None:
        async def sending(message: dict[str, Any]) -> None:
            if draining and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await app(scope, receive, sending)

    return wrapped
