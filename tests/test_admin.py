"""Django admin manages tenants, memberships, API keys and memories."""

import pytest
from django.db.models.signals import post_delete

from accounts.models import ApiKey, Role, hash_api_key
from memories.models import Memory
from tests.support.factories import MemoryFactory, api_key

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


def test_deleting_memories_in_admin_goes_through_the_service_and_names_the_admin(admin_client, make_user):
    author = make_user()
    memories = [MemoryFactory(owner=author), MemoryFactory(owner=author)]
    deleted = []

    def seen(sender, instance, **kwargs):
        deleted.append((instance.pk, instance.updated_by_id))

    post_delete.connect(seen, sender=Memory)
    try:
        response = admin_client.post(
            "/admin/memories/memory/",
            {"action": "delete_selected", "_selected_action": [m.pk for m in memories], "post": "yes"},
        )
    finally:
        post_delete.disconnect(seen, sender=Memory)
    assert response.status_code == 302
    staff = {user_id for _, user_id in deleted}
    assert len(deleted) == 2 and len(staff) == 1 and None not in staff and author.pk not in staff
