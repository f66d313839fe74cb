"""Per-process fan-out: one channel-layer membership per tenant, each event rendered once for all local connections."""

import asyncio
import logging
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError

from accounts.access import AccessChange, access_marks, principal_after, revalidate
from accounts.principal import Principal
from realtime import metrics
from realtime.broadcast import apublish_presence
from realtime.limits import LocalConnectionRegistry, RedisConnectionRegistry, refresh_seconds
from realtime.log import Position, current_positions, events_after, position, renew_epoch
from realtime.messages import logged_message
from realtime.models import Event
from realtime.protocol import ACCESS_CHANGED, tenant_group
from realtime.redis_clients import log_failure
from realtime.rendering import EventFrames

logger = logging.getLogger(__name__)


class Connection(Protocol):
    connection_id: str
    principal: Principal
    user_id: int
    tenant_id: int

    def revise(self, principal: Principal | None) -> None: ...

    def deliver(self, event: dict[str, Any], frames: EventFrames) -> bool: ...

    def renumbered(self, current: Position) -> None: ...

    async def close(self, code: int) -> None: ...


# How often a feed tries to join its tenant's group before the connection that wanted it is refused.
SUBSCRIBE_ATTEMPTS = 3


class TenantFeed:
    """This process's subscription to one tenant's group, and the local connections it feeds."""

    def __init__(self, tenant_id: int) -> None:
        self.tenant_id = tenant_id
        self.connections: set[Connection] = set()
        self.layer = get_channel_layer()
        self.channel = ""
        # Events from the layer, and None for "look in the log": handled by one task, in order.
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.last_seq = 0  # the last logged event this process delivered
        self.epoch: str | None = None  # the epoch last_seq belongs to
        self.ready = asyncio.get_running_loop().create_task(self._subscribe())
        self.tasks: list[asyncio.Task] = []

    async def _subscribe(self) -> None:
        self.channel = await self.layer.new_channel()
        for attempt in range(SUBSCRIBE_ATTEMPTS):
            try:
                await self.layer.group_add(tenant_group(self.tenant_id), self.channel)
                break
            except Exception as error:
                # Just after a Redis restart, redis-py reconnects the pub/sub connection under the
                # layer's own reader and the subscribe can fail ("readuntil() called while another
                # coroutine is already waiting", a RuntimeError): try again, then refuse the connection
                # as Redis being unavailable (1013, try again later), not as a server error.
                if attempt == SUBSCRIBE_ATTEMPTS - 1:
                    raise RedisConnectionError(f"subscribing to tenant {self.tenant_id} failed: {error!r}") from error
                logger.warning("Subscribing to tenant %s failed; retrying", self.tenant_id, exc_info=True)
                await asyncio.sleep(0.25 * (attempt + 1))
        # Events logged before the feed existed are history: clients ask for them with resume.
        self.last_seq, self.epoch = await database_sync_to_async(position)(self.tenant_id)
        loop = asyncio.get_running_loop()
        self.tasks += [loop.create_task(self._read()), loop.create_task(self._process())]
        # The in-memory layer drops a group member group_expiry seconds after it
        # joined (a day by default), however long it stays: re-join well before.
        expiry = getattr(self.layer, "group_expiry", None)
        if expiry:
            self.tasks.append(loop.create_task(self._renew(expiry / 3)))

    async def _renew(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await self.layer.group_add(tenant_group(self.tenant_id), self.channel)

    async def _read(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A broken Redis connection must not end the feed; the layer reconnects.
                logger.exception("Receiving events for tenant %s failed; retrying", self.tenant_id)
                await asyncio.sleep(1)
                continue
            self.inbox.put_nowait(event)

    async def _process(self) -> None:
        while True:
            event = await self.inbox.get()
            try:
                if event is None:
                    await self._catch_up()
                elif event.get("seq") is None:  # presence, typing, access changes: not logged
                    self.fan_out(event)
                elif event.get("epoch") != self.epoch:  # numbered anew (a restore): see what the log says now
                    await self._catch_up()
                elif event["seq"] > self.last_seq:  # else delivered already, from the log
                    if event["seq"] > self.last_seq + 1:
                        await self._catch_up(before=event["seq"])  # a publish was lost: the log has it
                    self.fan_out(event)
                    self.last_seq = event["seq"]
            except Exception:
                logger.exception("Delivering events of tenant %s failed; the log poll retries", self.tenant_id)

    async def _catch_up(self, *, before: int | None = None) -> None:
        """Deliver logged events this process missed (a lost publish, another process's write), in order."""
        missed, current = await database_sync_to_async(_missed)(self.tenant_id, self.last_seq, before, self.epoch)
        if current.epoch != self.epoch:
            # The stream was numbered anew (a restored database, a new counter): what the connections
            # hold may be gone and their seqs mean other events now. They reload, from the current seq.
            self.last_seq, self.epoch = current
            for connection in tuple(self.connections):
                connection.renumbered(current)
            return
        for event in missed:
            self.fan_out(logged_message(event, current.epoch))
            self.last_seq = event.seq

    def fan_out(self, event: dict[str, Any]) -> None:
        """Render the frame once and offer it to each local connection, which applies the visibility rule."""
        if event["event"] == ACCESS_CHANGED:
            change = AccessChange(**event["data"])
            for connection in tuple(self.connections):
                if connection.user_id == change.user_id:
                    connection.revise(principal_after(connection.principal, change))
            return
        rendered = EventFrames(event)
        sent = 0
        for connection in tuple(self.connections):
            try:
                sent += connection.deliver(event, rendered)
            except Exception:
                # One connection's failure (a frame it cannot be sent) must not cost the others the event.
                logger.exception("Delivering %s in tenant %s failed", event["event"], self.tenant_id)
        if sent:
            metrics.messages_sent.inc(sent)  # once per event, not per connection

    async def close(self) -> None:
        try:
            await asyncio.shield(self.ready)
        except Exception:
            return  # it never subscribed
        for task in self.tasks:
            task.cancel()
        await self.layer.group_discard(tenant_group(self.tenant_id), self.channel)


class Hub:
    """All the tenant feeds of one event loop, and its background work: registry refresh, access re-check, log poll."""

    def __init__(self, registry: RedisConnectionRegistry | LocalConnectionRegistry) -> None:
        self.registry = registry
        self.feeds: dict[int, TenantFeed] = {}
        self.background: list[asyncio.Task] = []
        self.access_mark: tuple[int, int] | None = None  # the access-change marks the poll saw

    async def join(self, connection: Connection) -> None:
        """Start feeding events of the connection's tenant to it; returns once the subscription is live."""
        feed = self.feeds.get(connection.tenant_id)
        if feed is None:
            feed = self.feeds[connection.tenant_id] = TenantFeed(connection.tenant_id)
        feed.connections.add(connection)
        if not self.background:
            loop = asyncio.get_running_loop()
            self.background = [loop.create_task(work()) for work in (self._refresh, self._revalidate, self._poll_log)]
        try:
            await asyncio.shield(feed.ready)
        except Exception:
            # Let the next connection try to subscribe afresh (e.g. once Redis is back).
            if self.feeds.get(connection.tenant_id) is feed:
                del self.feeds[connection.tenant_id]
            raise

    async def leave(self, connection: Connection) -> None:
        feed = self.feeds.get(connection.tenant_id)
        if feed is None:
            return
        feed.connections.discard(connection)
        if not feed.connections:
            del self.feeds[connection.tenant_id]
            await feed.close()

    def connections(self) -> list[Connection]:
        return [connection for feed in self.feeds.values() for connection in feed.connections]

    async def close_all(self, code: int) -> None:
        """Close every local connection, e.g. with 1012 when the server shuts down."""
        await asyncio.gather(*(connection.close(code) for connection in self.connections()))

    async def _refresh(self) -> None:
        registry = self.registry
        while True:
            await asyncio.sleep(refresh_seconds())
            try:
                await registry.refresh(
                    lambda: [
                        (c.connection_id, c.user_id, c.tenant_id, c.principal.user_name) for c in self.connections()
                    ]
                )
                # Connections of a process that died were never released: one process takes
                # each out and tells the tenant, whose presence lists would keep them otherwise.
                for tenant_id in list(self.feeds):
                    for connection_id, user_id, user_name in await registry.reap(tenant_id):
                        await apublish_presence(
                            "tenant.user_left",
                            tenant_id=tenant_id,
                            user_id=user_id,
                            user_name=user_name,
                            connection_id=connection_id,
                            origin=None,
                        )
            except Exception as error:
                log_failure(logger, error, "Refreshing connection counts failed; retrying")

    async def _poll_log(self) -> None:
        # One query for every tenant this process feeds: writes whose publish was
        # lost, and writes of processes on another channel layer (the embedded
        # default has no Redis), reach connections within this interval. A second
        # query sees access changes that sent no signal (QuerySet.update, raw SQL),
        # which database triggers mark.
        while True:
            await asyncio.sleep(settings.PUOMEMO_EVENT_LOG_POLL_SECONDS)
            feeds = dict(self.feeds)
            try:
                seqs, mark = await database_sync_to_async(_poll)(list(feeds))
            except Exception:
                logger.exception("Polling the event log failed; retrying")
                continue
            for tenant_id, feed in feeds.items():
                current = seqs.get(tenant_id, Position(0, None))
                if current.seq != feed.last_seq or current.epoch != feed.epoch:
                    feed.inbox.put_nowait(None)
            # And on the first poll, for a change made while the hub started; a failed re-check is tried again.
            if mark != self.access_mark and await self._recheck_access():
                self.access_mark = mark

    async def _revalidate(self) -> None:
        # Access changes reach connections at once as events, or within a poll through the
        # triggers; this catches what both missed (an event lost while Redis was down and a
        # change the triggers do not watch, such as a session deleted by hand).
        while True:
            await asyncio.sleep(settings.PUOMEMO_WS_REVALIDATE_SECONDS)
            await self._recheck_access()

    async def _recheck_access(self) -> bool:
        """Re-read every local connection's access; returns whether that could be done."""
        connections = self.connections()
        try:
            current = await database_sync_to_async(revalidate)([c.principal for c in connections])
        except Exception:
            logger.exception("Re-checking the access of open connections failed; retrying")
            return False
        for connection, principal in zip(connections, current, strict=True):
            connection.revise(principal)
        return True


def _poll(tenant_ids: list[int]) -> tuple[dict[int, Position], tuple[int, int]]:
    """The position of each tenant's stream, and the access-change marks."""
    return current_positions(tenant_ids), access_marks()


def _missed(tenant_id: int, after: int, before: int | None, epoch: str | None) -> tuple[list[Event], Position]:
    """The logged events after `after` (and before `before`), and where the stream stands (its epoch)."""
    current = position(tenant_id)
    # A counter behind what this process delivered in the same epoch was put back (a restore that kept the table,
    # or SQLite's file): the epoch is renewed, so that no client resumes from numbers that mean other events now.
    if current.epoch == epoch and current.seq < after:
        current = renew_epoch(tenant_id, epoch)
    return events_after(tenant_id, after, before=before), current
