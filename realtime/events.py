"""Real-time events: what they carry and the one function that publishes them."""

import asyncio
import logging
import os
import threading
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from accounts.principal import Actor
from memories.models import Memory
from memories.visibility import Audience
from realtime import catalogue, metrics
from realtime.custom import CUSTOM
from realtime.frames import JSON, encode, iso, new_id, now_iso
from realtime.log import record_event
from realtime.models import Event

logger = logging.getLogger(__name__)

MEMORIES = "memories"
TENANT_UPDATES = "tenant.updates"
CHANNELS = (MEMORIES, TENANT_UPDATES, CUSTOM)

# The channel-layer message type that each process's fan-out reads.
LAYER_MESSAGE_TYPE = "tenant.event"
# An event for the server processes, not for clients: a user's access changed.
ACCESS_CHANGED = "access.changed"


def tenant_group(tenant_id: int) -> str:
    """The channel-layer group of a tenant (ASCII letters, digits and periods only)."""
    return f"puomemo.tenant.{tenant_id}"


def memory_payload(memory: Memory) -> dict[str, Any]:
    """The memory object as events carry it."""
    return {
        "id": str(memory.id),
        "title": memory.title,
        "content": memory.content,
        "tags": list(memory.tags),
        "visibility": memory.visibility,
        "version": memory.version,
        "created_at": iso(memory.created_at),
        "updated_at": iso(memory.updated_at),
    }


def actor_data(actor: Actor) -> dict[str, str]:
    """Who made a change, as memory events name them."""
    return {"user_id": str(actor.user_id), "user_name": actor.user_name}


def event_message(
    *,
    tenant_id: int,
    event_type: str,
    channel: str | None,
    data: dict[str, Any],
    audience: dict[str, Any] | None,
    origin: str | None = None,
    seq: int | None = None,
    event_id: str | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """An event as the channel layer carries it to each process's fan-out.

    `audience` None means everyone in the tenant; otherwise it holds the memory's
    `before` and `after` audiences (see change_audience). `origin` is a connection
    that must not receive its own event. `seq` numbers logged memory events.
    """
    catalogue.check(event_type, data, kinds=catalogue.EVENTS)  # no payload drifts from docs/protocol.md
    return {
        "type": LAYER_MESSAGE_TYPE,
        "id": event_id or new_id(),
        "timestamp": timestamp or now_iso(),
        "event": event_type,
        "channel": channel,
        "tenant_id": tenant_id,
        "audience": audience,
        "origin": origin,
        "seq": seq,
        "data": data,
    }


def logged_event(event: Event) -> dict[str, Any]:
    """A logged event as event_message's arguments: what is published on commit, and what fills gaps."""
    return {
        "tenant_id": event.tenant_id,
        "event_type": event.type,
        "channel": MEMORIES,
        "data": event.data,
        "audience": event.audience,
        "seq": event.seq,
        "event_id": str(event.event_id),
        "timestamp": iso(event.created_at),
    }


async def apublish(**event: Any) -> bool:
    """Send an event (event_message's arguments) to every server process holding connections of its tenant.

    Returns whether it was sent. A failure (Redis down) is logged and counted,
    never raised: the write that caused the event has committed, and its caller
    must not report it as failed (a logged event is delivered from the log).
    """
    return (await _asend([event_message(**event)]))[0]


async def apublish_presence(
    event_type: str, *, tenant_id: int, user_id: int, user_name: str, connection_id: str, origin: str | None
) -> bool:
    """Tell the tenant a connection joined or left (tenant.user_joined / tenant.user_left)."""
    data = {"user_id": str(user_id), "user_name": user_name, "connection_id": connection_id}
    return await apublish(
        tenant_id=tenant_id, event_type=event_type, channel=TENANT_UPDATES, data=data, audience=None, origin=origin
    )


async def _asend(messages: list[dict[str, Any]]) -> list[bool]:
    # Concurrent group sends: the Redis layer (realtime/layers.py) pipelines them into one round trip.
    layer = get_channel_layer()
    if len(messages) == 1:
        results = [await _outcome(layer.group_send(tenant_group(messages[0]["tenant_id"]), messages[0]))]
    else:
        results = await asyncio.gather(
            *(layer.group_send(tenant_group(message["tenant_id"]), message) for message in messages),
            return_exceptions=True,
        )
    sent = []
    for message, result in zip(messages, results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):
            logger.error("Publishing %s for tenant %s failed", message["event"], message["tenant_id"], exc_info=result)
            metrics.publish_failures.labels(event=message["event"]).inc()
        sent.append(not isinstance(result, BaseException))
    return sent


async def _outcome(sending: Any) -> Any:
    try:
        return await sending
    except Exception as error:
        return error


def change_audience(before: Audience | None, after: Audience | None, before_title: str = "") -> dict[str, Any]:
    """Who could see a memory before an event and who can after, as events carry it through the channel layer."""
    return {
        "before": before._asdict() if before is not None else None,
        "after": after._asdict() if after is not None else None,
        "before_title": before_title,
    }


def publish(**event: Any) -> bool:
    """Synchronous form of apublish, for signal handlers and other sync code."""
    return _send([event_message(**event)])[0]


def publish_on_commit(**event: Any) -> None:
    """Publish once the current transaction commits; a rolled-back transaction publishes nothing.

    The events of one transaction are sent together, in one round trip to Redis.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        publish(**event)
        return
    batch = getattr(connection, "puomemo_publish_batch", None)
    if batch is None:
        batch = connection.puomemo_publish_batch = _Batch(connection)
    message = event_message(**event)  # checked against the catalogue now, in the writer's code

    # A plain function rather than a partial: on_commit(robust=True) logs the callback's __qualname__.
    def committed() -> None:
        batch.messages.append(message)

    # Each event's own hook: Django drops it if its savepoint rolls back.
    transaction.on_commit(committed, robust=True)
    batch.send_last()


class _Batch:
    """The events of a connection's current transaction, sent by one hook that runs after theirs."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.messages: list[dict[str, Any]] = []
        self.hook = (set(), self.send, True)

    def send_last(self) -> None:
        # Django runs commit hooks in order and offers no "after the others" hook: keep
        # this one last in its list. No savepoint ids: a savepoint rollback must not drop
        # it, and it sends only what the surviving hooks added.
        hooks = self.connection.run_on_commit
        if hooks and hooks[-1] is self.hook:
            return
        if self.hook in hooks:
            hooks.remove(self.hook)
        hooks.append(self.hook)

    def send(self) -> None:
        # A commit hook that writes in a transaction of its own may reuse this batch
        # while its hooks run: send what is here now, and what comes later next time.
        if getattr(self.connection, "puomemo_publish_batch", None) is self:
            del self.connection.puomemo_publish_batch
        messages, self.messages = self.messages, []
        if messages:
            _send(messages)


def _send(messages: list[dict[str, Any]]) -> list[bool]:
    """Send from sync code through the process's persistent publisher, and wait for the outcome."""
    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        # Only this process's own event loop (daphne's) has listeners on the embedded layer.
        from realtime.fanout import listening_loop

        loop = listening_loop()
        if loop is None:
            return [True] * len(messages)  # nobody here listens; other processes read the log
    else:
        loop = _publisher_loop()
    try:
        if asyncio.get_running_loop() is loop:  # sync code called on the loop itself: cannot wait
            sending = loop.create_task(_asend(messages))
            _sending.add(sending)  # a task nobody references may be collected mid-way
            sending.add_done_callback(_sending.discard)
            return [True] * len(messages)
    except RuntimeError:
        pass
    try:
        return asyncio.run_coroutine_threadsafe(_asend(messages), loop).result(PUBLISH_TIMEOUT_SECONDS)
    except Exception:
        logger.exception("Publishing %d event(s) timed out", len(messages))
        for message in messages:
            metrics.publish_failures.labels(event=message["event"]).inc()
        return [False] * len(messages)


# Longer than a Redis command's own timeouts (settings.REDIS_OPTIONS), so those answer first.
PUBLISH_TIMEOUT_SECONDS = 10
_publisher: tuple[int, asyncio.AbstractEventLoop] | None = None
_publisher_lock = threading.Lock()
_sending: set[asyncio.Task] = set()


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """This process's publishing event loop, in a thread of its own: its Redis connection stays open."""
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher[0] != os.getpid():  # a forked child starts its own
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="puomemo-publisher", daemon=True).start()
            _publisher = (os.getpid(), loop)
        return _publisher[1]


def log_and_publish(
    *, tenant_id: int, event_type: str, memory_id: Any, data: dict[str, Any], audience: dict[str, Any]
) -> None:
    """Log a memory event in the current transaction, numbered, and publish it once the transaction commits."""
    event = record_event(tenant_id=tenant_id, event_type=event_type, memory_id=memory_id, data=data, audience=audience)
    publish_on_commit(**logged_event(event))


# How a viewer who sees an event as its type says sees it; anyone else gets a variant.
NATURAL_VIEW = {"memory.created": "created", "memory.updated": "updated", "memory.deleted": "deleted"}
# The events whose variants stand for a change of who may see the memory.
TRANSITIONS = frozenset(NATURAL_VIEW)


class EventFrames:
    """An event's frames, rendered once per way of seeing it and encoding rather than once per connection."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        audience = event["audience"]
        self.before = Audience(**audience["before"]) if audience and audience["before"] else None
        self.after = Audience(**audience["after"]) if audience and audience["after"] else None
        self._texts: dict[tuple[str | None, str], str | bytes | None] = {}

    def text(self, seen: str | None = None, encoding: str = JSON) -> str | bytes | None:
        """The frame for a viewer who sees the change as `seen` (None: events for everyone); None for no frame.

        JSON text, or MessagePack bytes for `encoding` "msgpack".
        """
        key = (seen, encoding)
        if key not in self._texts:
            self._texts[key] = self._render(seen, encoding)
        return self._texts[key]

    def _render(self, seen: str | None, encoding: str) -> str | bytes | None:
        event, data = self.event, self.event["data"]
        message_type = event["event"]
        if message_type not in TRANSITIONS and seen in ("created", "updated"):
            seen = None  # embedding_complete, typing: for whoever may see the memory now, as they are
        elif message_type not in TRANSITIONS and seen == "deleted":
            return None
        if seen is not None and seen != NATURAL_VIEW.get(message_type, seen):
            actor = {"user_id": data["user_id"], "user_name": data["user_name"]}
            if seen == "deleted":  # the viewer lost sight of it: for them, it is gone
                title = event["audience"]["before_title"]
                message_type, data = "memory.deleted", {"memory_id": data["memory"]["id"], "title": title, **actor}
                data["reason"] = "visibility"
            else:  # the viewer gained sight of it: for them, it is new
                message_type, data = "memory.created", {"memory": data["memory"], **actor}
        elif message_type == "memory.updated" and not data["changes"]:
            return None  # only who may see it changed, and this viewer could and can
        return encode(
            message_type,
            data,
            message_id=event["id"],
            timestamp=event["timestamp"],
            seq=event["seq"],
            encoding=encoding,
        )
