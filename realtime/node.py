"""The real-time runtime of one server process, made in one place: its connection registry, ticket store,
publisher, and a fan-out hub per event loop."""

import asyncio
import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from realtime.admission import Admission
from realtime.broadcast import Publisher, apublish_presence
from realtime.fanout import Connection, Hub
from realtime.limits import LocalConnectionRegistry, RedisConnectionRegistry
from realtime.redis_clients import RedisTarget
from realtime.ticket_store import MemoryTicketStore, RedisTicketStore

logger = logging.getLogger(__name__)


class Node:
    """Everything the real-time layer keeps for the life of a process (like Centrifuge's Node)."""

    def __init__(self, redis: RedisTarget | None = None) -> None:
        self.redis = redis = redis or RedisTarget()
        # Shared with every process through Redis, or this process's own on the embedded default.
        self.registry = RedisConnectionRegistry(redis) if redis else LocalConnectionRegistry()
        self.tickets = RedisTicketStore(redis) if redis else MemoryTicketStore()
        self.publisher = Publisher(self.listening_loop)
        self._hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()
        self._admissions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Admission] = weakref.WeakKeyDictionary()

    def hub(self) -> Hub:
        """The hub of the running event loop (daphne runs one per process; each test has its own)."""
        loop = asyncio.get_running_loop()
        if loop not in self._hubs:
            self._hubs[loop] = Hub(self.registry)
        return self._hubs[loop]

    def admission(self) -> Admission:
        """The admission bound of the running event loop (daphne runs one per process)."""
        loop = asyncio.get_running_loop()
        if loop not in self._admissions:
            self._admissions[loop] = Admission.from_settings()
        return self._admissions[loop]

    async def admit(self, connection: Connection) -> str | None:
        """Count a new connection, feed it its tenant's events, tell the tenant; or say which cap refused it."""
        refused = await self.registry.acquire(
            connection.connection_id, connection.user_id, connection.tenant_id, connection.principal.user_name
        )
        if refused is None:
            await self.hub().join(connection)
            await self._presence("tenant.user_joined", connection)
        return refused

    async def release(self, connection: Connection, *, announced: bool) -> None:
        """Undo admit(): every step runs even when one before it failed (Redis down or restarting)."""
        steps = [
            lambda: self.hub().leave(connection),
            lambda: self.registry.release(connection.connection_id, connection.user_id, connection.tenant_id),
        ]
        if announced:
            steps.append(lambda: self._presence("tenant.user_left", connection))
        for step in steps:
            try:
                await step()  # made only when its turn comes: a release cut short leaves no coroutine unawaited
            except Exception:
                logger.exception("Cleaning up WebSocket connection %s failed", connection.connection_id)

    async def _presence(self, event_type: str, connection: Connection) -> None:
        await apublish_presence(
            event_type,
            tenant_id=connection.tenant_id,
            user_id=connection.user_id,
            user_name=connection.principal.user_name,
            connection_id=connection.connection_id,
            origin=connection.connection_id,  # not news to the connection itself
        )

    def listening_loop(self) -> asyncio.AbstractEventLoop | None:
        """The running loop whose hub feeds connections here, if any: the embedded layer's listeners live there."""
        for loop, hub in list(self._hubs.items()):
            if hub.feeds and loop.is_running() and not loop.is_closed():
                return loop
        return None


_current: Node | None = None


def node() -> Node:
    """This process's node, made from the settings on first use (and again if the Redis settings changed)."""
    global _current
    redis = RedisTarget.from_settings()
    if _current is None or _current.redis != redis:
        _current = Node(redis)
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
