"""A write to a memory as its observers see it: who made it, and who could see the memory before and after."""

from dataclasses import dataclass
from typing import Any

from accounts.principal import Actor
from memories.models import Memory
from memories.visibility import Audience


@dataclass(frozen=True)
class MemoryChange:
    """One committed-to-be write: created or restored (no before), deleted (no after) or updated (both)."""

    memory: Memory
    actor: Actor
    before: Audience | None
    after: Audience | None
    before_title: str
    changes: dict[str, Any]

    @classmethod
    def saved(cls, memory: Memory, *, created: bool) -> "MemoryChange":
        """The change a save makes, read before the save's snapshot is reset."""
        before = None
        if not created:
            before = Audience(
                tenant_id=memory.loaded("tenant_id"),
                owner_id=memory.loaded("owner_id"),
                visibility=memory.loaded("visibility"),
            )
        return cls(
            memory=memory,
            actor=_actor(memory),
            before=before,
            after=Audience.of(memory),
            before_title=memory.loaded("title"),
            changes={} if created else memory.client_changes(),
        )

    @classmethod
    def deleted(cls, memory: Memory) -> "MemoryChange":
        """The change a delete makes."""
        return cls(
            memory=memory,
            actor=_actor(memory),
            before=Audience.of(memory),
            after=None,
            before_title=memory.title,
            changes={},
        )

    @classmethod
    def restored(cls, memory: Memory) -> "MemoryChange":
        """The change a restore from the trash makes: to its observers, the memory is back as if created."""
        return cls(
            memory=memory,
            actor=_actor(memory),
            before=None,
            after=Audience.of(memory),
            before_title=memory.title,
            changes={},
        )

    @property
    def is_news(self) -> bool:
        """Whether any client could notice: a client field or who may see the memory changed."""
        return bool(self.changes) or self.before != self.after


def _actor(memory: Memory) -> Actor:
    # Services and admin record who changes it; a write that never did is credited to the owner.
    if memory.updated_by_id is None:
        return Actor.of(memory.owner)
    return Actor(user_id=memory.updated_by_id, user_name=memory.updated_by_name)
