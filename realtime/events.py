"""Real-time events: what they carry and the one function that publishes them."""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from accounts.principal import Actor
from memories.models import Memory
from memories.visibility import Audience
from realtime import metrics
from realtime.frames import iso, new_id, now_iso

logger = logging.getLogger(__name__)

MEMORIES = "memories"
TENANT_UPDATES = "tenant.updates"
CHANNELS = (MEMORIES, TENANT_UPDATES)

# The channel-layer message type that each process's fan-out reads.
LAYER_MESSAGE_TYPE = "tenant.event"


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
        "created_at": iso(memory.created_at),
        "updated_at": iso(memory.updated_at),
    }


def actor_data(actor: Actor) -> dict[str, str]:
    """Who made a change, as memory events name them."""
    return {"user_id": str(actor.user_id), "user_name": actor.user_name}


async def apublish(
    *, tenant_id: int, event_type: str, channel: str, data: dict[str, Any], audience: Audience | None
) -> bool:
    """Send an event to every server process holding connections of the tenant; audience None means everyone.

    Returns whether it was sent. A failure (Redis down) is logged and counted, never raised: the write that
    caused the event has committed, and its caller must not report it as failed.
    """
    message = {
        "type": LAYER_MESSAGE_TYPE,
        "id": new_id(),
        "timestamp": now_iso(),
        "event": event_type,
        "channel": channel,
        "tenant_id": tenant_id,
        "audience": audience._asdict() if audience is not None else None,
        "data": data,
    }
    try:
        await get_channel_layer().group_send(tenant_group(tenant_id), message)
    except Exception:
        logger.exception("Publishing %s for tenant %s failed", event_type, tenant_id)
        metrics.publish_failures.labels(event=event_type).inc()
        return False
    return True


def publish(**event: Any) -> bool:
    """Synchronous form of apublish, for signal handlers and other sync code."""
    return async_to_sync(apublish)(**event)


def publish_on_commit(**event: Any) -> None:
    """Publish once the current transaction commits; a rolled-back transaction publishes nothing."""

    # A plain function rather than a partial: on_commit(robust=True) logs the callback's __qualname__.
    def send() -> None:
        publish(**event)

    transaction.on_commit(send, robust=True)
