"""Business actions on memories; every write goes through the ORM so its signals fire."""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from accounts.principal import Principal
from memories.models import Memory
from memories.visibility import can_change, can_create


@transaction.atomic
def memory_create(*, author: Principal, title: str = "", content: str = "", tags=(), visibility: str) -> Memory:
    """Create a memory owned by the author, in the author's tenant."""
    if not can_create(author):
        raise PermissionDenied("Guests are read-only.")
    memory = Memory(
        tenant_id=author.tenant_id,
        owner_id=author.user_id,
        title=title,
        content=content,
        tags=list(tags),
        visibility=visibility,
    )
    memory.actor = author.actor
    memory.save()
    return memory


@transaction.atomic
def memory_update(*, editor: Principal, memory: Memory, data: dict[str, Any]) -> Memory:
    """Change the given fields of a memory the editor may change."""
    if not can_change(editor, memory):
        raise PermissionDenied("You may not change this memory.")
    for field, value in data.items():
        setattr(memory, field, value)
    memory.actor = editor.actor
    memory.save()
    return memory


@transaction.atomic
def memory_delete(*, editor: Principal, memory: Memory) -> None:
    """Delete a memory the editor may change."""
    if not can_change(editor, memory):
        raise PermissionDenied("You may not delete this memory.")
    memory.actor = editor.actor
    memory.delete()
