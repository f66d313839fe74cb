"""The visibility and permission rule as a table: every role x visibility x action, through REST."""

import pytest

from accounts.models import Role
from memories.models import Memory, Visibility
from memories.visibility import Audience, can_change, can_view
from tests.support.factories import MemoryFactory, principal

pytestmark = pytest.mark.django_db

URL = "/api/v4/memories/"

# Who does what to a memory owned by someone else in the same tenant.
# view: list + retrieve; change: PATCH and DELETE.
OTHERS_MEMORY = {
    # role           visibility          view   change
    (Role.ADMIN, Visibility.PRIVATE): (False, False),
    (Role.ADMIN, Visibility.TEAM): (True, True),
    (Role.ADMIN, Visibility.PUBLIC): (True, True),
    (Role.MEMBER, Visibility.PRIVATE): (False, False),
    (Role.MEMBER, Visibility.TEAM): (True, False),
    (Role.MEMBER, Visibility.PUBLIC): (True, False),
    (Role.GUEST, Visibility.PRIVATE): (False, False),
    (Role.GUEST, Visibility.TEAM): (False, False),
    (Role.GUEST, Visibility.PUBLIC): (True, False),
}

# The same for one's own memory (a guest may own memories from before a demotion).
OWN_MEMORY = {
    (Role.ADMIN, Visibility.PRIVATE): (True, True),
    (Role.ADMIN, Visibility.TEAM): (True, True),
    (Role.ADMIN, Visibility.PUBLIC): (True, True),
    (Role.MEMBER, Visibility.PRIVATE): (True, True),
    (Role.MEMBER, Visibility.TEAM): (True, True),
    (Role.MEMBER, Visibility.PUBLIC): (True, True),
    (Role.GUEST, Visibility.PRIVATE): (True, False),
    (Role.GUEST, Visibility.TEAM): (False, False),
    (Role.GUEST, Visibility.PUBLIC): (True, False),
}


def _check_rest(client, memory, view: bool, change: bool):
    listed = {m["id"] for m in client.get(URL).json()["results"]}
    assert (str(memory.id) in listed) is view
    assert client.get(f"{URL}{memory.id}/").status_code == (200 if view else 404)
    patch = client.patch(f"{URL}{memory.id}/", {"title": "changed"}, format="json")
    assert patch.status_code == (200 if change else 403 if view else 404)
    memory.refresh_from_db()
    assert (memory.title == "changed") is change
    delete = client.delete(f"{URL}{memory.id}/")
    assert delete.status_code == (204 if change else 403 if view else 404)
    assert Memory.objects.filter(pk=memory.pk).exists() is not change


@pytest.mark.parametrize(("role", "visibility"), OTHERS_MEMORY)
def test_others_memory(make_user, client_for, role, visibility):
    viewer = make_user(role)
    memory = MemoryFactory(owner=make_user(Role.MEMBER), visibility=visibility)
    view, change = OTHERS_MEMORY[role, visibility]
    assert can_view(principal(viewer), Audience(memory.tenant_id, memory.owner_id, visibility)) is view
    assert can_change(principal(viewer), memory) is change
    _check_rest(client_for(viewer), memory, view, change)


@pytest.mark.parametrize(("role", "visibility"), OWN_MEMORY)
def test_own_memory(make_user, client_for, role, visibility):
    owner = make_user(role)
    memory = MemoryFactory(owner=owner, visibility=visibility)
    view, change = OWN_MEMORY[role, visibility]
    _check_rest(client_for(owner), memory, view, change)


@pytest.mark.parametrize("role", Role.values)
@pytest.mark.parametrize("visibility", Visibility.values)
def test_another_tenants_memory_is_always_404(make_user, client_for, other_tenant, role, visibility):
    viewer = make_user(role)
    memory = MemoryFactory(owner=make_user(Role.ADMIN, in_tenant=other_tenant), visibility=visibility)
    _check_rest(client_for(viewer), memory, view=False, change=False)


@pytest.mark.parametrize(("role", "allowed"), [(Role.ADMIN, True), (Role.MEMBER, True), (Role.GUEST, False)])
def test_only_guests_cannot_create(make_user, client_for, role, allowed):
    response = client_for(make_user(role)).post(URL, {"content": "hello"}, format="json")
    assert response.status_code == (201 if allowed else 403)
    assert Memory.objects.exists() is allowed
