"""Real-time events: what they carry and the one function that publishes them."""

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from memories.models import Memory
from realtime.frames import iso, new_id, now_iso

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


def memory_audience(memory: Memory) -> dict[str, Any]:
    """What the visibility rule needs to decide, per connection, who may see an event about this memory."""
    return {"tenant_id": memory.tenant_id, "owner_id": memory.owner_id, "visibility": memory.visibility}


async def apublish(
    *, tenant_id: int, event_type: str, channel: str, data: dict[str, Any], audience: dict[str, Any] | None
) -> None:
    """Send an event to every server process holding connections of the tenant; audience None means everyone."""
    message = {
        "type": LAYER_MESSAGE_TYPE,
        "id": new_id(),
        "timestamp": now_iso(),
        "event": event_type,
        "channel": channel,
        "tenant_id": tenant_id,
        "audience": audience,
        "data": data,
    }
    await get_channel_layer().group_send(tenant_group(tenant_id), message)


def publish(**event: Any) -> None:
    """Synchronous form of apublish, for signal handlers and other sync code."""
    async_to_sync(apublish)(**event)
