"""Read paths for memories, always starting from the visibility rule."""

import json

from django.db import connection
from django.db.models import Q, QuerySet

from accounts.principal import Principal
from memories.models import Memory
from memories.visibility import visible_memories


def memory_list(*, viewer: Principal, filters: dict) -> QuerySet[Memory]:
    """Visible memories, newest first, narrowed by tag, visibility, text and update time."""
    memories = visible_memories(viewer).select_related("owner").order_by("-created_at", "-id")
    if "tag" in filters:
        memories = memories.filter(_has_tag(filters["tag"].strip().lower()))
    if "visibility" in filters:
        memories = memories.filter(visibility=filters["visibility"])
    if "q" in filters:
        memories = memories.filter(Q(title__icontains=filters["q"]) | Q(content__icontains=filters["q"]))
    if "updated_since" in filters:
        memories = memories.filter(updated_at__gte=filters["updated_since"])
    return memories


def _has_tag(tag: str) -> Q:
    if connection.vendor == "postgresql":
        return Q(tags__contains=[tag])
    # SQLite has no JSON containment lookup; match the quoted element in the stored
    # JSON text (Django writes it with json.dumps, so the quoting is the same).
    return Q(tags__icontains=json.dumps(tag))
