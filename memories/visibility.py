"""The one visibility rule: who may see and who may change which memory, for REST and real-time alike."""

from typing import NamedTuple

from django.db.models import Q, QuerySet

from accounts.models import Role
from accounts.principal import Principal
from memories.models import Memory, Visibility


class Audience(NamedTuple):
    """What the visibility rule reads of a memory; events carry it so each connection decides without a query."""

    tenant_id: int
    owner_id: int
    visibility: str

    @classmethod
    def of(cls, memory: Memory) -> "Audience":
        return cls(tenant_id=memory.tenant_id, owner_id=memory.owner_id, visibility=memory.visibility)


def can_view(viewer: Principal, audience: Audience) -> bool:
    """Whether the viewer may see a memory with this audience (an in-memory check, no query)."""
    if audience.tenant_id != viewer.tenant_id:
        return False
    if audience.visibility == Visibility.PUBLIC:
        return True
    if audience.visibility == Visibility.TEAM:
        return viewer.role in (Role.ADMIN, Role.MEMBER)
    return audience.owner_id == viewer.user_id


def seen_as(viewer: Principal, *, before: Audience | None, after: Audience | None) -> str | None:
    """How a change looks to a viewer: "updated", "deleted" (lost sight), "created" (gained sight) or None."""
    saw = before is not None and can_view(viewer, before)
    sees = after is not None and can_view(viewer, after)
    if saw and sees:
        return "updated"
    if saw:
        return "deleted"
    if sees:
        return "created"
    return None


def visible_memories(viewer: Principal) -> QuerySet[Memory]:
    """The memories the viewer may see, as a queryset; the database form of can_view."""
    rule = Q(visibility=Visibility.PUBLIC) | Q(visibility=Visibility.PRIVATE, owner_id=viewer.user_id)
    if viewer.role in (Role.ADMIN, Role.MEMBER):
        rule |= Q(visibility=Visibility.TEAM)
    return Memory.objects.filter(rule, tenant_id=viewer.tenant_id)


def changeable_rule(viewer: Principal) -> Q:
    """The memories the viewer may change, as a filter; the database form of can_change."""
    if viewer.role == Role.GUEST:
        return Q(pk__in=[])
    rule = Q(owner_id=viewer.user_id)
    if viewer.role == Role.ADMIN:
        rule |= Q(visibility__in=[Visibility.PUBLIC, Visibility.TEAM])
    return rule & Q(tenant_id=viewer.tenant_id)


def restorable_memories(viewer: Principal) -> QuerySet[Memory]:
    """The memories in the trash the viewer may restore: those they could have deleted (can_change)."""
    return Memory.all_objects.filter(changeable_rule(viewer), deleted_at__isnull=False)


def can_create(viewer: Principal) -> bool:
    """Guests are read-only."""
    return viewer.role != Role.GUEST


def can_change(viewer: Principal, memory: Memory) -> bool:
    """Owners change their own; admins also change others' non-private memories; guests change nothing."""
    if viewer.role == Role.GUEST:
        return False
    if not can_view(viewer, Audience.of(memory)):
        return False
    if memory.owner_id == viewer.user_id:
        return True
    return viewer.role == Role.ADMIN and memory.visibility != Visibility.PRIVATE
