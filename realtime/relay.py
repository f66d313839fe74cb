"""What clients ask of the server beyond frames: channels, typing indicators and custom events, checked."""

import uuid
from typing import Any

from channels.db import database_sync_to_async

from accounts.principal import Principal
from memories.selectors import memory_audience
from realtime.broadcast import apublish
from realtime.custom import InvalidCustomEvent, check_publish
from realtime.frames import InvalidFrame
from realtime.limits import SlidingWindow, Throttle
from realtime.messages import actor_data, change_audience
from realtime.protocol import CHANNELS, CUSTOM, MEMORIES


class Refused(Exception):
    """A relay the client may not make; `data` is the `error` frame's data that says why."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data["message"])
        self.data = data


def channels_named(data: dict, message_type: str) -> list[str]:
    """The channels a subscribe or unsubscribe names; raises InvalidFrame, or Refused for an unknown channel."""
    channels = data.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise InvalidFrame(f"Invalid message format: {message_type} needs data.channels, a list")
    unknown = sorted(set(channels) - set(CHANNELS))
    if unknown:
        raise Refused({"message": f"Unknown channel(s): {', '.join(unknown)}. Known: {', '.join(CHANNELS)}"})
    return channels


async def relay_typing(principal: Principal, origin: str, data: dict, throttle: Throttle) -> None:
    """Tell those who may see the memory that the principal is typing in it (one a memory per interval)."""
    memory_id = data.get("memory_id")
    if not isinstance(memory_id, str):
        raise InvalidFrame("Invalid message format: typing needs data.memory_id, a string")
    try:
        memory_id = str(uuid.UUID(memory_id))  # one spelling, for the throttle and for the receivers
    except ValueError:
        audience = None
    else:
        audience = await database_sync_to_async(memory_audience)(viewer=principal, memory_id=memory_id)
    if audience is None:
        raise Refused({"message": f"Unknown memory: {memory_id[:100]}"})
    if throttle.allow(memory_id):  # keystrokes come fast; relay one a memory per interval
        await apublish(
            tenant_id=principal.tenant_id,
            event_type="memory.typing",
            channel=MEMORIES,
            data={"memory_id": memory_id, **actor_data(principal.actor)},
            audience=change_audience(audience, audience),
            origin=origin,
        )


async def relay_custom(principal: Principal, origin: str, data: dict, window: SlidingWindow) -> None:
    """Publish a client's custom event to the tenant's `custom` subscribers, never back to `origin`."""
    if "event" not in data:
        raise InvalidFrame("Invalid message format: publish needs data.event and data.payload")
    try:
        event = check_publish(principal, data, window)
    except InvalidCustomEvent as error:
        raise Refused(error.error_data()) from None
    memory_id, audience = event["memory_id"], None
    if memory_id is not None:
        audience = await database_sync_to_async(memory_audience)(viewer=principal, memory_id=memory_id)
        if audience is None:
            raise Refused({"message": f"Unknown memory: {memory_id}"})
    await apublish(
        tenant_id=principal.tenant_id,
        event_type=event["event"],
        channel=CUSTOM,
        data=event,
        audience=change_audience(audience, audience) if audience is not None else None,
        origin=origin,
    )
