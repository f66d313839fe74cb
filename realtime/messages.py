"""The event message: what a change tells the server processes, built once from a write or from a log row."""

from typing import Any

from accounts.principal import Actor
from memories.visibility import Audience
from realtime import catalogue
from realtime.frames import iso, new_id, now_iso
from realtime.models import Event
from realtime.protocol import LAYER_MESSAGE_TYPE, MEMORIES


def actor_data(actor: Actor) -> dict[str, str]:
    """Who made a change, as memory events name them."""
    return {"user_id": str(actor.user_id), "user_name": actor.user_name}


def change_audience(before: Audience | None, after: Audience | None, before_title: str = "") -> dict[str, Any]:
    """Who could see a memory before an event and who can after, as events carry it through the channel layer."""
    return {
        "before": before._asdict() if before is not None else None,
        "after": after._asdict() if after is not None else None,
        "before_title": before_title,
    }


def event_message(
    *,
    tenant_id: int,
    event_type: str,
    channel: str | None,
    data: dict[str, Any],
    audience: dict[str, Any] | None,
    origin: str | None = None,
    seq: int | None = None,
    epoch: str | None = None,
    event_id: str | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """An event as the channel layer carries it to each process's fan-out.

    `audience` None means everyone in the tenant; otherwise it holds the memory's
    `before` and `after` audiences (see change_audience). `origin` is a connection
    that must not receive its own event. `seq` numbers logged memory events, within `epoch`.
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
        "epoch": epoch,
        "data": data,
    }


def logged_message(event: Event, epoch: str | None) -> dict[str, Any]:
    """A logged event as the message it was published as: what fills gaps and what a resume replays."""
    return event_message(
        tenant_id=event.tenant_id,
        event_type=event.type,
        channel=MEMORIES,
        data=event.data,
        audience=event.audience,
        seq=event.seq,
        epoch=epoch,
        event_id=str(event.event_id),
        timestamp=iso(event.created_at),
    )
