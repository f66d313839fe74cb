"""Replaying the event log to one viewer, as they may see it now: for resume over /ws and for GET /events."""

from dataclasses import dataclass

from accounts.principal import Principal
from memories.models import Memory
from memories.visibility import Audience, seen_as
from realtime.events import EventFrames, event_message, logged_event
from realtime.log import events_after


@dataclass(frozen=True)
class Replay:
    frames: list[str]  # the frames the viewer may see, in seq order
    last_seq: int  # the last logged event looked at, seen or not


def replay(viewer: Principal, after_seq: int, *, limit: int | None = None) -> Replay:
    """The viewer's frames of the events after `after_seq`, judged by their current role and each memory's
    current visibility rather than by what they were when the event was published."""
    events = events_after(viewer.tenant_id, after_seq, limit=limit)
    now = {
        row["id"]: Audience(tenant_id=row["tenant_id"], owner_id=row["owner_id"], visibility=row["visibility"])
        for row in Memory.objects.filter(pk__in={e.memory_id for e in events}).values(
            "id", "tenant_id", "owner_id", "visibility"
        )
    }
    frames = []
    for event in events:
        rendered = EventFrames(event_message(**logged_event(event)))
        # Who could see it before the event, as the viewer's role is now; who may see it now (None: deleted).
        seen = seen_as(viewer, before=rendered.before, after=now.get(event.memory_id))
        text = rendered.text(seen) if seen is not None else None
        if text is not None:
            frames.append(text)
    return Replay(frames=frames, last_seq=events[-1].seq if events else after_seq)
