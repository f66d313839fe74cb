"""The real-time runtime of one server process, made in one place: its connection registry, ticket store,
publisher, and a fan-out hub per event loop."""

import asyncio
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings

from realtime.broadcast import Publisher
from realtime.fanout import Hub
from realtime.limits import LocalConnectionRegistry, RedisConnectionRegistry
from realtime.ticket_store import MemoryTicketStore, RedisTicketStore


class Node:
    """Everything the real-time layer keeps for the life of a process (like Centrifuge's Node)."""

    def __init__(self, redis_url: str = "") -> None:
        self.redis_url = redis_url
        # Shared with every process through Redis, or this process's own on the embedded default.
        self.registry = RedisConnectionRegistry(redis_url) if redis_url else LocalConnectionRegistry()
        self.tickets = RedisTicketStore(redis_url) if redis_url else MemoryTicketStore()
        self.publisher = Publisher(self.listening_loop)
        self._hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()

    def hub(self) -> Hub:
        """The hub of the running event loop (daphne runs one per process; each test has its own)."""
        loop = asyncio.get_running_loop()
        if loop not in self._hubs:
            self._hubs[loop] = Hub(self.registry)
        return self._hubs[loop]

    def listening_loop(self) -> asyncio.AbstractEventLoop | None:
        """The running loop whose hub feeds connections here, if any: the embedded layer's listeners live there."""
        for loop, hub in list(self._hubs.items()):
            if hub.feeds and loop.is_running() and not loop.is_closed():
                return loop
        return None


_current: Node | None = None


def node() -> Node:
    """This process's node, made from the settings on first use (and again if REDIS_URL changed)."""
    global _current
    if _current is None or _current.redis_url != settings.REDIS_URL:
        _current = Node(settings.REDIS_URL)
    return _current


@contextmanager
def using(replacement: Node) -> Iterator[Node]:
    """Make `replacement` this process's node for a while (a test's own), then restore the one before."""
    global _current
    before, _current = _current, replacement
    try:
        yield replacement
    finally:
        _current = before
