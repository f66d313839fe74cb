"""Custom events: an application's own signals, relayed through the tenant's authenticated, visibility-filtered pipe.

They are ephemeral: published like memory events but never logged, so they carry no `seq` and are not replayed.
"""

import json
import uuid
from typing import Any

from django.conf import settings

from accounts.models import Role
from accounts.principal import Actor, Principal
from memories.models import Memory
from memories.visibility import Audience
from realtime.catalogue import CUSTOM_NAME_PATTERN, is_custom

CUSTOM = "custom"  # the channel custom events go to


class InvalidCustomEvent(ValueError):
    """A custom event that may not be sent; the message says why."""


def custom_data(event: Any, payload: Any, memory_id: Any, actor: Actor) -> dict[str, Any]:
    """The data of a custom event frame; raises InvalidCustomEvent for a bad name, payload or memory id."""
    if not isinstance(event, str) or not is_custom(event):
        shown = event[:100] if isinstance(event, str) else type(event).__name__
        raise InvalidCustomEvent(f"Invalid custom event name: {shown!r}; expected {CUSTOM_NAME_PATTERN}")
    if not isinstance(payload, dict):
        raise InvalidCustomEvent("Invalid custom event: data.payload must be an object")
    limit = settings.PUOMEMO_CUSTOM_MAX_PAYLOAD_BYTES
    if len(json.dumps(payload, separators=(",", ":"), default=str).encode()) > limit:
        raise InvalidCustomEvent(f"Custom event payload is larger than {limit} bytes")
    if memory_id is not None:
        try:
            memory_id = str(uuid.UUID(memory_id))  # one spelling for the receivers
        except (TypeError, ValueError, AttributeError):
            raise InvalidCustomEvent("Invalid custom event: data.memory_id must be a memory's id") from None
    return {
        "event": event,
        "payload": payload,
        "memory_id": memory_id,
        "user_id": str(actor.user_id),
        "user_name": actor.user_name,
    }


def may_publish(principal: Principal) -> bool:
    """Guests publish custom events only where the deployment allows it."""
    return principal.role != Role.GUEST or settings.PUOMEMO_CUSTOM_ALLOW_GUESTS


def publish_custom(
    *, tenant_id: int, event: str, payload: dict[str, Any], actor: Actor, memory: Memory | None = None
) -> bool:
    """Publish a custom event from server code: to the tenant, or to those who may see `memory` when given."""
    from realtime.events import change_audience, publish  # events imports this module

    if memory is not None and memory.tenant_id != tenant_id:
        raise ValueError("The memory belongs to another tenant")
    audience = Audience.of(memory) if memory is not None else None
    return publish(
        tenant_id=tenant_id,
        event_type=event,
        channel=CUSTOM,
        data=custom_data(event, payload, str(memory.pk) if memory is not None else None, actor),
        audience=change_audience(audience, audience) if audience is not None else None,
    )
