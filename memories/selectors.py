"""Read paths for memories, always starting from the visibility rule."""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction
from django.db.models import Q, QuerySet

from accounts.principal import Principal
from memories import embeddings
from memories.models import EmbeddingStatus, Memory
from memories.vector_index import tenant_vectors
from memories.visibility import Audience, can_view, visible_memories


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
        memories = memories.filter(_has_tag(filters["tag"].strip().lower()))
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


def memory_search(*, viewer: Principal, q: str, limit: int) -> list[dict]:
    """Visible memories ranked by cosine similarity to the query; pending ones by a marked plain-text fallback."""
    visible = visible_memories(viewer)
    ids, scores, order = tenant_vectors(viewer.tenant_id).ranked(embeddings.encode([q])[0])
    results = []
    # The cache may hold rows the viewer may not see or that changed since: each
    # candidate is re-read by primary key and checked with the visibility rule.
    start, window = 0, max(4 * limit, 100)
    while len(results) < limit and start < len(order):
        rows = order[start : start + window]
        found = Memory.objects.defer("embedding").select_related("owner").in_bulk([ids[i] for i in rows])
        for i in rows:
            memory = found.get(ids[i])
            if memory and memory.embedding_status == EmbeddingStatus.READY and can_view(viewer, Audience.of(memory)):
                results.append({"memory": memory, "score": float(scores[i]), "match": "semantic"})
        start, window = start + window, window * 4
    results = results[:limit]
    if len(results) < limit:
        pending = visible.exclude(embedding_status=EmbeddingStatus.READY).filter(
            Q(title__icontains=q) | Q(content__icontains=q)
        )
        for memory in pending.select_related("owner").order_by("-updated_at")[: limit - len(results)]:
            results.append({"memory": memory, "score": None, "match": "text"})
    return results
