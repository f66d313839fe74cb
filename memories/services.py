"""Business actions on memories; every write goes through the ORM so its signals fire."""

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from accounts.principal import Actor, Principal
from memories.models import Memory
from memories.visibility import Audience, can_change, can_create, can_view


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
    memory.changed_by(author.actor)
    memory.save()
    return memory


class VersionConflict(Exception):
    """The memory is no longer at the version the editor expected; `current` is what it is now."""

    def __init__(self, current: Memory):
        super().__init__(f"Memory {current.pk} is at version {current.version}.")
        self.current = current


class InvalidMemory(ValueError):
    """A write that would leave a memory invalid; `errors` maps fields to messages, as a form's do."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _locked(*, editor: Principal, memory: Memory | UUID | str, expected_version: int | None) -> Memory:
    """The memory's row (given or named by its id), read and locked until the transaction ends, checked against
    the expected version.

    Raises Memory.DoesNotExist when it is gone or the editor may no longer see it,
    PermissionDenied when the editor may not change it, VersionConflict when it moved on.
    """
    # `of`: lock the memory's row, not its owner's. SQLite has no row locks; its
    # transactions take the database's write lock when they begin (settings).
    pk = memory.pk if isinstance(memory, Memory) else memory
    current = Memory.objects.select_for_update(of=("self",)).select_related("owner").filter(pk=pk).first()
    if current is None or not can_view(editor, Audience.of(current)):
        raise Memory.DoesNotExist(f"No memory {pk}.")
    if not can_change(editor, current):
        raise PermissionDenied("You may not change this memory.")
    if expected_version is not None and expected_version != current.version:
        raise VersionConflict(current)
    current.changed_by(editor.actor)
    return current


@transaction.atomic
def memory_update(
    *, editor: Principal, memory: Memory | UUID | str, data: dict[str, Any], expected_version: int | None = None
) -> Memory:
    """Change the given fields of a memory the editor may change (given, or named by its id); returns it as saved.

    The row is read under a lock, so the version check and the write are one step
    and the version always grows from the stored one. A given `memory` is not changed.
    Raises InvalidMemory when the change would leave neither title nor content.
    """
    memory = _locked(editor=editor, memory=memory, expected_version=expected_version)
    for field, value in data.items():
        setattr(memory, field, value)
    if not memory.title.strip() and not memory.content.strip():
        raise InvalidMemory({"content": ["A memory needs a title or content."]})
    memory.save()
    return memory


@transaction.atomic
def memory_delete(*, editor: Principal, memory: Memory | UUID | str, expected_version: int | None = None) -> None:
    """Move a memory the editor may change to the trash, given or named by its id (if still at `expected_version`,
    when given); it is gone for every read until restored, and purged after the retention."""
    _trash(_locked(editor=editor, memory=memory, expected_version=expected_version), editor.actor)


def _trash(memory: Memory, actor: Actor) -> None:
    # A save, not a delete: the receivers see deleted_at set and publish memory.deleted as a delete would.
    memory.changed_by(actor)
    memory.deleted_at = timezone.now()
    memory.deleted_by_id = actor.user_id
    memory.save()


def trash_cutoff() -> datetime:
    """Memories deleted before this are past the retention: no longer restorable, and purged."""
    return timezone.now() - timedelta(days=settings.PUOMEMO_TRASH_RETENTION_DAYS)


@transaction.atomic
def memory_restore(*, actor: Principal, memory: Memory | UUID | str) -> Memory:
    """Take a memory out of the trash (who may: whoever could have deleted it); returns it as restored.

    Raises Memory.DoesNotExist when it is not in the trash nor visible, or past the retention;
    PermissionDenied when the actor may not change it. A memory not in the trash is returned as it is.
    """
    pk = memory.pk if isinstance(memory, Memory) else memory
    current = Memory.all_objects.select_for_update(of=("self",)).select_related("owner").filter(pk=pk).first()
    if current is None or not can_view(actor, Audience.of(current)):
        raise Memory.DoesNotExist(f"No memory {pk}.")
    if current.deleted_at is None:
        return current  # restored already (a second click on Undo): nothing to do
    if current.deleted_at < trash_cutoff():
        raise Memory.DoesNotExist(f"Memory {pk} is past the trash's retention.")
    if not can_change(actor, current):
        raise PermissionDenied("You may not restore this memory.")
    _untrash(current, actor.actor)
    return current


def _untrash(memory: Memory, actor: Actor) -> None:
    # The receivers see deleted_at cleared and publish memory.restored.
    memory.changed_by(actor)
    memory.deleted_at = None
    memory.deleted_by = None
    memory.save()


def trash_purge() -> int:
    """Delete for good the memories in the trash past the retention; returns how many."""
    # One at a time would be the same: a purged memory's post_delete publishes nothing (its delete was news).
    return Memory.all_objects.filter(deleted_at__lt=trash_cutoff()).delete()[1].get(Memory._meta.label, 0)


@transaction.atomic
def memory_save_by_staff(*, actor: Actor, memory: Memory) -> Memory:
    """Save a staff member's edit made in Django admin (whose own permissions apply), recording who made it."""
    memory.changed_by(actor)
    memory.save()
    return memory


@transaction.atomic
def memory_delete_by_staff(*, actor: Actor, memory: Memory) -> None:
    """Delete a memory from Django admin: to the trash, or for good when it is in the trash already."""
    if memory.deleted_at is None:
        _trash(memory, actor)
    else:
        memory.delete()


@transaction.atomic
def memory_restore_by_staff(*, actor: Actor, memory: Memory) -> None:
    """Restore a memory from the trash in Django admin (whose own permissions apply)."""
    if memory.deleted_at is not None:
        _untrash(memory, actor)
