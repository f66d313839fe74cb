"""Replaying the event log to one viewer, as they may see it now: for resume over /ws and for GET /events."""

from dataclasses import dataclass

from accounts.principal import Principal
from memories.models import Memory
from memories.visibility import Audience, can_view, seen_as
from realtime.frames import JSON
from realtime.log import events_after
from realtime.messages import logged_message
from realtime.rendering import EventFrames


@dataclass(frozen=True)
class Replay:
    frames: list[str | bytes]  # the frames the viewer may see, in seq order, in the encoding asked for
    last_seq: int  # the last logged event looked at, seen or not
    looked_at: int  # how many logged events that was: 0 when none is left
    finished: bool  # no event is left to look at (before `before`): no next page to ask for


def replay(
    viewer: Principal,
    after_seq: int,
    *,
    epoch: str | None,
    before: int | None = None,
    limit: int | None = None,
    max_bytes: int | None = None,
    encoding: str = JSON,
) -> Replay:
    """The viewer's frames of the events after `after_seq` (and before `before`): each as they would have seen it
    live with the role they have now, and only while the memory is still theirs to see.

    Each frame carries `epoch`, the stream's as the caller read it (resync_reason) before replaying.
    At most `limit` events are looked at, and no more once the frames reach `max_bytes`.
    """
    events = events_after(viewer.tenant_id, after_seq, before=before, limit=limit)
    now = {
        row["id"]: Audience(tenant_id=row["tenant_id"], owner_id=row["owner_id"], visibility=row["visibility"])
        for row in Memory.objects.filter(pk__in={e.memory_id for e in events}).values(
            "id", "tenant_id", "owner_id", "visibility"
        )
    }
    frames, size, last_seq, looked_at = [], 0, after_seq, 0
    for event in events:
        if max_bytes is not None and size >= max_bytes:
            break  # the rest is the next page's
        last_seq, looked_at = event.seq, looked_at + 1
        rendered = EventFrames(logged_message(event, epoch))
        # The frame the viewer would have had live, with the role they have now: the
        # event's content was shown to those who could see the memory then, no one else.
        seen = seen_as(viewer, before=rendered.before, after=rendered.after)
        if seen in ("created", "updated") and not _may_see(viewer, now.get(event.memory_id)):
            continue  # private since, or deleted since: the memory is no longer theirs to see
        text = rendered.text(seen, encoding) if seen is not None else None
        if text is not None:
            frames.append(text)
            size += len(text)
    finished = looked_at == len(events) and (limit is None or len(events) < limit)
    return Replay(frames=frames, last_seq=last_seq, looked_at=looked_at, finished=finished)


def _may_see(viewer: Principal, audience: Audience | None) -> bool:
    return audience is not None and can_view(viewer, audience)
