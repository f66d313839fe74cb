"""An event's frames, rendered once per way of seeing it and per encoding, and which one a viewer gets."""

from typing import Any

from accounts.principal import Principal
from memories.visibility import Audience, seen_as
from realtime.frames import JSON, encode

# How a viewer who sees an event as its type says sees it; anyone else gets a variant.
NATURAL_VIEW = {
    "memory.created": "created",
    "memory.restored": "created",  # back from the trash: who may see it now sees it appear
    "memory.updated": "updated",
    "memory.deleted": "deleted",
}
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

    def seen_by(self, viewer: Principal) -> str | None:
        """How the viewer sees the change ("created", "updated", "deleted", "all" for a tenant-wide event) or None."""
        if self.event["audience"] is None:  # everyone in the tenant
            return "all"
        return seen_as(viewer, before=self.before, after=self.after)

    def frame_for(self, viewer: Principal, encoding: str = JSON) -> str | bytes | None:
        """The frame this viewer gets, in their encoding; None when they may not see the event."""
        seen = self.seen_by(viewer)
        return None if seen is None else self.text(None if seen == "all" else seen, encoding)

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
            epoch=event.get("epoch"),
            encoding=encoding,
        )
