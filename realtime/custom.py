"""Custom events: an application's own signals, relayed through the tenant's authenticated, visibility-filtered pipe.

They are ephemeral: published like memory events but never logged, so they carry no `seq` and are not replayed.
"""

import json
import uuid
from typing import Any

import msgpack
from django.conf import settings

from accounts.models import Role
from accounts.principal import Actor, Principal
from memories.models import Memory
from memories.visibility import Audience
from realtime.catalogue import CUSTOM_NAME_PATTERN, is_custom
from realtime.limits import SlidingWindow
from realtime.messages import change_audience
from realtime.protocol import CUSTOM
from realtime.publish import publish_on_commit


class InvalidCustomEvent(ValueError):
    """A custom event that may not be sent; the message says why."""

    retry_after: float | None = None

    def error_data(self) -> dict[str, Any]:
        """The data of the `error` frame that answers the publish."""
        data: dict[str, Any] = {"message": str(self)}
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        return data


class PublishRateExceeded(InvalidCustomEvent):
    """A connection published more custom events in the last minute than PUOMEMO_CUSTOM_RATE_PER_MINUTE."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Custom event rate limit exceeded; retry after {retry_after} s")
        self.retry_after = retry_after


def custom_data(event: Any, payload: Any, memory_id: Any, actor: Actor) -> dict[str, Any]:
    """The data of a custom event frame; raises InvalidCustomEvent for a bad name, payload or memory id."""
    if not isinstance(event, str) or not is_custom(event):
        shown = event[:100] if isinstance(event, str) else type(event).__name__
        raise InvalidCustomEvent(f"Invalid custom event name: {shown!r}; expected {CUSTOM_NAME_PATTERN}")
    if not isinstance(payload, dict):
        raise InvalidCustomEvent("Invalid custom event: data.payload must be an object")
    limit = settings.PUOMEMO_CUSTOM_MAX_PAYLOAD_BYTES
    try:
        # Strict JSON: what JSON connections receive must parse anywhere (no NaN, no MessagePack binary or ext).
        size = len(json.dumps(payload, separators=(",", ":"), allow_nan=False).encode())
        # And what MessagePack carries (the Redis layer, msgpack connections): no integers beyond 64 bits.
        msgpack.packb(payload)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise InvalidCustomEvent("Invalid custom event: data.payload must be a JSON object") from None
    if size > limit:
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


def check_publish(principal: Principal, data: dict[str, Any], window: SlidingWindow) -> dict[str, Any]:
    """The data of the custom event a client's `publish` asks for; raises InvalidCustomEvent when it may not go.

    `window` holds the connection's recent publishes; a refused one does not count against it.
    The caller still checks that the principal may see `memory_id`, when one is given.
    """
    if not may_publish(principal):
        raise InvalidCustomEvent("Guests may not publish custom events")
    event = custom_data(data.get("event"), data.get("payload"), data.get("memory_id"), principal.actor)
    if window.hit() > settings.PUOMEMO_CUSTOM_RATE_PER_MINUTE:
        window.forget_last()  # a client retrying too fast is not locked out
        raise PublishRateExceeded(round(window.retry_after(), 1))
    return event


def publish_custom(
    *, tenant_id: int, event: str, payload: dict[str, Any], actor: Actor, memory: Memory | None = None
) -> None:
    """Publish a custom event from server code: to the tenant, or to those who may see `memory` when given.

    Sent when the current transaction commits (at once outside one), so it follows the writes it may be about;
    raises InvalidCustomEvent for a bad name or payload.
    """
    if memory is not None and memory.tenant_id != tenant_id:
        raise ValueError("The memory belongs to another tenant")
    audience = Audience.of(memory) if memory is not None else None
    publish_on_commit(
        tenant_id=tenant_id,
        event_type=event,
        channel=CUSTOM,
        data=custom_data(event, payload, str(memory.pk) if memory is not None else None, actor),
        audience=change_audience(audience, audience) if audience is not None else None,
    )
