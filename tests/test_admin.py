"""Django admin manages tenants, memberships, API keys and memories."""

import pytest

from accounts.models import ApiKey, Role, hash_api_key
from memories.models import Memory
from memories.services import memory_delete
from realtime.models import Event
from tests.support.factories import MemoryFactory, api_key, principal

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, make_user):
    admin = make_user(Role.ADMIN, is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


@pytest.mark.parametrize("model", ["accounts/tenant", "accounts/membership", "accounts/apikey", "memories/memory"])
def test_changelists_and_add_forms_render(admin_client, model):
    MemoryFactory()
    assert admin_client.get(f"/admin/{model}/").status_code == 200
    assert admin_client.get(f"/admin/{model}/add/").status_code == 200


def test_adding_an_api_key_shows_it_once_and_stores_its_hash(admin_client, make_user):
    owner = make_user()
    response = admin_client.post("/admin/accounts/apikey/add/", {"user": owner.pk, "name": "ci"}, follow=True)
    message = next(str(m) for m in response.context["messages"] if "pm_" in str(m))
    key = message.split("The new key is ")[1].split(" ")[0]
    stored = ApiKey.objects.get(user=owner)
    assert stored.key_hash == hash_api_key(key)
    assert key not in admin_client.get(f"/admin/accounts/apikey/{stored.pk}/change/").content.decode()


def test_revoke_action(admin_client, make_user):
    api_key(make_user())
    key = ApiKey.objects.get()
    admin_client.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_memory_change_form_saves(admin_client):
    memory = MemoryFactory(title="Before")
    data = {
        "tenant": memory.tenant_id,
        "owner": memory.owner_id,
        "title": "After",
        "content": memory.content,
        "tags": '["x"]',
        "visibility": "public",
    }
    response = admin_client.post(f"/admin/memories/memory/{memory.pk}/change/", data)
    assert response.status_code == 302
    memory.refresh_from_db()
    assert (memory.title, memory.tags, memory.visibility) == ("After", ["x"], "public")
    assert memory.updated_by.is_staff and memory.updated_by_name  # the edit is recorded as the admin's


def test_deleting_memories_in_admin_moves_them_to_the_trash_and_names_the_admin(admin_client, make_user):
    author = make_user()
    memories = [MemoryFactory(owner=author), MemoryFactory(owner=author)]
    response = admin_client.post(
        "/admin/memories/memory/",
        {"action": "delete_selected", "_selected_action": [m.pk for m in memories], "post": "yes"},
    )
    assert response.status_code == 302
    trashed = Memory.all_objects.filter(pk__in=[m.pk for m in memories])
    assert not Memory.objects.filter(pk__in=[m.pk for m in memories]).exists()
    assert {(m.deleted_by.is_staff, m.deleted_by_id == m.updated_by_id) for m in trashed} == {(True, True)}
    events = Event.objects.filter(type="memory.deleted", memory_id__in=[m.pk for m in memories])
    assert {e.data["user_id"] for e in events} == {str(trashed[0].deleted_by_id)} and events.count() == 2


def test_admin_lists_the_trash_only_when_asked_and_restores_from_it(admin_client, make_user):
    kept = MemoryFactory(title="Kept note")
    gone = MemoryFactory(title="Binned note")
    memory_delete(editor=principal(gone.owner), memory=gone)
    default = admin_client.get("/admin/memories/memory/").content.decode()
    assert "Kept note" in default and "Binned note" not in default
    trash = admin_client.get("/admin/memories/memory/", {"trash": "trashed"}).content.decode()
    assert "Binned note" in trash and "Kept note" not in trash
    response = admin_client.post(
        "/admin/memories/memory/?trash=trashed", {"action": "restore", "_selected_action": [gone.pk, kept.pk]}
    )
    assert response.status_code == 302
    assert set(Memory.objects.values_list("title", flat=True)) == {"Kept note", "Binned note"}
    assert Event.objects.filter(type="memory.restored", memory_id=gone.pk).count() == 1


def test_deleting_a_memory_in_the_trash_in_admin_purges_it_without_a_second_event(admin_client):
    memory = MemoryFactory()
    memory_delete(editor=principal(memory.owner), memory=memory)
    response = admin_client.post(f"/admin/memories/memory/{memory.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Memory.all_objects.filter(pk=memory.pk).exists()
    assert Event.objects.filter(type="memory.deleted", memory_id=memory.pk).count() == 1
