"""Real-time events: what they carry and the one function that publishes them."""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from accounts.principal import Actor
from memories.models import Memory
from memories.visibility import Audience
from realtime import catalogue, metrics
from realtime.frames import encode, iso, new_id, now_iso
from realtime.log import record_event
from realtime.models import Event

logger = logging.getLogger(__name__)

MEMORIES = "memories"
TENANT_UPDATES = "tenant.updates"
CHANNELS = (MEMORIES, TENANT_UPDATES)

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
    catalogue.check(event_type, data, kinds=catalogue.EVENTS)  # a payload cannot drift from the README
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
    message = event_message(**event)
    try:
        await get_channel_layer().group_send(tenant_group(message["tenant_id"]), message)
    except Exception:
        logger.exception("Publishing %s for tenant %s failed", message["event"], message["tenant_id"])
        metrics.publish_failures.labels(event=message["event"]).inc()
        return False
    return True


def change_audience(before: Audience | None, after: Audience | None, before_title: str = "") -> dict[str, Any]:
    """Who could see a memory before an event and who can after, as events carry it through the channel layer."""
    return {
        "before": before._asdict() if before is not None else None,
        "after": after._asdict() if after is not None else None,
        "before_title": before_title,
    }


def publish(**event: Any) -> bool:
    """Synchronous form of apublish, for signal handlers and other sync code."""
    return async_to_sync(apublish)(**event)


def publish_on_commit(**event: Any) -> None:
    """Publish once the current transaction commits; a rolled-back transaction publishes nothing."""

    # A plain function rather than a partial: on_commit(robust=True) logs the callback's __qualname__.
    def send() -> None:
        publish(**event)

    transaction.on_commit(send, robust=True)


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
    """An event's frames, rendered once per way of seeing it rather than once per connection."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        audience = event["audience"]
        self.before = Audience(**audience["before"]) if audience and audience["before"] else None
        self.after = Audience(**audience["after"]) if audience and audience["after"] else None
        self._texts: dict[str | None, str | None] = {}

    def text(self, seen: str | None = None) -> str | None:
        """The frame for a viewer who sees the change as `seen` (None: events for everyone); None for no frame."""
        if seen not in self._texts:
            self._texts[seen] = self._render(seen)
        return self._texts[seen]

    def _render(self, seen: str | None) -> str | None:
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
        return encode(message_type, data, message_id=event["id"], timestamp=event["timestamp"], seq=event["seq"])
