"""Read paths for memories, always starting from the visibility rule."""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction
from django.db.models import Q, QuerySet

from accounts.principal import Principal
from memories.models import Memory, normalize_tag
from memories.search import Hit, hybrid_search
from memories.services import trash_cutoff
from memories.visibility import Audience, restorable_memories, visible_memories


@contextmanager
def consistent_read() -> Iterator[None]:
    """A transaction whose queries all see one snapshot of the database."""
    outermost = not connection.in_atomic_block  # an enclosing transaction keeps its own isolation level
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":  # READ COMMITTED: a new snapshot per statement
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield  # SQLite: the transaction holds the database lock, so nothing changes under it


def memory_list(*, viewer: Principal, filters: dict) -> QuerySet[Memory]:
    """Visible memories, newest first, narrowed by tag, owner (username), visibility, text and update time."""
    memories = visible_memories(viewer).select_related("owner").order_by("-created_at", "-id")
    if "tag" in filters:
        memories = memories.filter(_has_tag(normalize_tag(filters["tag"])))
    if "owner" in filters:
        memories = memories.filter(owner__username=filters["owner"])
    if "visibility" in filters:
        memories = memories.filter(visibility=filters["visibility"])
    if "q" in filters:
        memories = memories.filter(Q(title__icontains=filters["q"]) | Q(content__icontains=filters["q"]))
    if "updated_since" in filters:
        memories = memories.filter(updated_at__gte=filters["updated_since"])
    return memories


def memory_audience(*, viewer: Principal, memory_id: str) -> Audience | None:
    """Who may see a memory the viewer may see; None when the viewer may not see it (or it does not exist)."""
    try:
        uuid.UUID(memory_id)
    except ValueError:
        return None
    memory = visible_memories(viewer).filter(pk=memory_id).only("tenant_id", "owner_id", "visibility").first()
    return Audience.of(memory) if memory is not None else None


def _has_tag(tag: str) -> Q:
    if connection.vendor == "postgresql":
        return Q(tags__contains=[tag])
    # SQLite has no JSON containment lookup; match the quoted element in the stored
    # JSON text (Django writes it with json.dumps, so the quoting is the same).
    return Q(tags__icontains=json.dumps(tag))


def memory_search(*, viewer: Principal, q: str, limit: int) -> list[Hit]:
    """Visible memories that hold the query's words or are about it, fused by rank; none below the relevance floor."""
    return hybrid_search(viewer, q, limit)


def memory_trash(*, viewer: Principal) -> QuerySet[Memory]:
    """The memories in the trash the viewer may restore, most recently deleted first (within the retention)."""
    return (
        restorable_memories(viewer)
        .filter(deleted_at__gte=trash_cutoff())
        .select_related("owner", "deleted_by")
        .order_by("-deleted_at", "-id")
    )
