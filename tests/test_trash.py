"""Deleting moves a memory to the trash: gone for every read, restorable by whoever could delete it, purged later."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts.models import Role
from memories.embedding_service import embed_due_memories
from memories.models import EmbeddingStatus, Memory, Visibility
from memories.search import hybrid_search
from memories.services import memory_delete, memory_restore, trash_purge
from realtime import catalogue
from realtime.models import Event
from realtime.replay import replay
from tests.support.auth import jwt_for
from tests.support.factories import MemoryFactory, principal
from tests.support.wsclient import connect, frames

pytestmark = pytest.mark.django_db

URL = "/api/v4/memories/"


def trashed(memory: Memory, by=None) -> Memory:
    """The memory, deleted (to the trash) by its owner or `by`."""
    memory_delete(editor=principal(by or memory.owner), memory=memory)
    return Memory.all_objects.get(pk=memory.pk)


def test_a_deleted_memory_is_gone_from_every_rest_read_but_kept(make_user, client_for):
    owner = make_user()
    memory = MemoryFactory(owner=owner, title="Dentist on Tuesday", content="Bring the forms")
    embed_due_memories()
    api = client_for(owner)
    assert api.delete(f"{URL}{memory.pk}/").status_code == 204

    assert api.get(f"{URL}{memory.pk}/").status_code == 404
    assert api.get(URL).json()["results"] == []
    assert api.get(URL, {"q": "Dentist"}).json()["results"] == []
    assert api.get(f"{URL}search", {"q": "dentist"}).json()["results"] == []
    assert api.patch(f"{URL}{memory.pk}/", {"title": "x"}, format="json").status_code == 404
    assert api.delete(f"{URL}{memory.pk}/").status_code == 404
    row = Memory.all_objects.get(pk=memory.pk)
    assert (row.title, row.deleted_by_id, row.deleted_at is not None) == ("Dentist on Tuesday", owner.pk, True)


def test_delete_is_logged_once_as_before_and_restore_logs_memory_restored_shaped_as_created(make_user, client_for):
    owner = make_user(first_name="Ann")
    memory = MemoryFactory(owner=owner, title="Plan")
    api = client_for(owner)
    api.delete(f"{URL}{memory.pk}/")
    response = api.post(f"{URL}{memory.pk}/restore/")
    assert response.status_code == 200 and response.json()["id"] == str(memory.pk)
    assert response["ETag"] == f'"{response.json()["version"]}"'

    deleted, restored = Event.objects.filter(memory_id=memory.pk).exclude(type="memory.created").order_by("seq")
    assert (deleted.type, deleted.data) == (
        "memory.deleted",
        {"memory_id": str(memory.pk), "title": "Plan", "user_id": str(owner.pk), "user_name": "Ann"},
    )
    assert deleted.audience["after"] is None
    assert restored.type == "memory.restored"
    catalogue.check("memory.restored", restored.data)
    created = Event.objects.get(memory_id=memory.pk, type="memory.created")
    assert set(restored.data) == set(created.data) == {"memory", "user_id", "user_name"}
    assert restored.data["memory"]["title"] == "Plan"
    assert (restored.audience["before"], restored.audience["after"]["visibility"]) == (None, "team")
    assert api.get(f"{URL}{memory.pk}/").status_code == 200


def test_restoring_a_memory_not_in_the_trash_changes_nothing(make_user, client_for):
    memory = MemoryFactory(owner=make_user())
    response = client_for(memory.owner).post(f"{URL}{memory.pk}/restore/")
    assert response.status_code == 200 and response.json()["version"] == memory.version
    assert not Event.objects.filter(type="memory.restored").exists()


@pytest.mark.parametrize(
    ("restorer", "visibility", "status"),
    [
        ("owner", Visibility.PRIVATE, 200),
        ("admin", Visibility.TEAM, 200),
        ("admin", Visibility.PUBLIC, 200),
        ("admin", Visibility.PRIVATE, 404),  # not theirs to see
        ("member", Visibility.TEAM, 403),  # could see it, could not have deleted it
        ("guest", Visibility.PUBLIC, 403),
        ("guest", Visibility.TEAM, 404),
        ("other tenant admin", Visibility.PUBLIC, 404),
    ],
)
def test_who_may_restore_mirrors_who_may_delete(make_user, other_tenant, client_for, restorer, visibility, status):
    owner = make_user(Role.MEMBER)
    memory = trashed(MemoryFactory(owner=owner, visibility=visibility))
    users = {
        "owner": owner,
        "admin": make_user(Role.ADMIN),
        "member": make_user(Role.MEMBER),
        "guest": make_user(Role.GUEST),
        "other tenant admin": make_user(Role.ADMIN, in_tenant=other_tenant),
    }
    api = client_for(users[restorer])
    listed = [m["id"] for m in api.get(f"{URL}trash/").json()["results"]]
    assert (str(memory.pk) in listed) == (status == 200)  # the trash lists exactly what one may restore
    assert api.post(f"{URL}{memory.pk}/restore/").status_code == status
    assert Memory.objects.filter(pk=memory.pk).exists() == (status == 200)


def test_the_trash_lists_what_the_caller_may_restore_newest_first_and_paginated(make_user, client_for):
    owner, admin, member = make_user(), make_user(Role.ADMIN), make_user()
    older = trashed(MemoryFactory(owner=owner, title="older"))
    private = trashed(MemoryFactory(owner=owner, title="private", visibility=Visibility.PRIVATE))
    newer = trashed(MemoryFactory(owner=owner, title="newer"), by=admin)
    MemoryFactory(owner=owner, title="still here")

    page = client_for(owner).get(f"{URL}trash/").json()
    assert set(page) == {"count", "next", "previous", "results"}
    assert [m["title"] for m in page["results"]] == ["newer", "private", "older"]
    assert page["results"][0]["deleted_by"] == {"id": admin.pk, "username": admin.username}
    assert page["results"][0]["deleted_at"] is not None
    assert [m["title"] for m in client_for(admin).get(f"{URL}trash/").json()["results"]] == ["newer", "older"]
    assert client_for(member).get(f"{URL}trash/").json()["results"] == []
    assert {older.pk, private.pk, newer.pk} == set(
        Memory.all_objects.filter(deleted_at__isnull=False).values_list("pk", flat=True)
    )


def test_past_the_retention_a_memory_is_no_longer_restorable_and_is_purged(make_user, client_for, settings):
    settings.PUOMEMO_TRASH_RETENTION_DAYS = 30
    owner = make_user()
    old, young = trashed(MemoryFactory(owner=owner)), trashed(MemoryFactory(owner=owner))
    Memory.all_objects.filter(pk=old.pk).update(deleted_at=timezone.now() - timedelta(days=31))
    api = client_for(owner)
    assert [m["id"] for m in api.get(f"{URL}trash/").json()["results"]] == [str(young.pk)]
    assert api.post(f"{URL}{old.pk}/restore/").status_code == 404
    events = Event.objects.count()

    out = StringIO()
    call_command("purge_trash", stdout=out)
    assert out.getvalue().strip() == "Purged 1 memories (the trash keeps 30 days)."
    assert list(Memory.all_objects.values_list("pk", flat=True)) == [young.pk]
    assert Event.objects.count() == events  # its delete was announced when it went to the trash
    assert trash_purge() == 0


def test_the_service_refuses_what_the_rule_refuses(make_user):
    memory = trashed(MemoryFactory(owner=make_user(), visibility=Visibility.TEAM))
    with pytest.raises(PermissionDenied):
        memory_restore(actor=principal(make_user()), memory=memory.pk)
    with pytest.raises(Memory.DoesNotExist):
        memory_restore(actor=principal(make_user(Role.GUEST)), memory=memory.pk)
    restored = memory_restore(actor=principal(make_user(Role.ADMIN)), memory=memory)
    assert (restored.deleted_at, restored.deleted_by_id) == (None, None)


def test_search_and_the_vector_index_forget_a_deleted_memory_and_find_it_again_once_restored(make_user):
    owner = make_user()
    viewer = principal(owner)
    memory = MemoryFactory(owner=owner, title="Adopted a puppy from the shelter", content="")
    embed_due_memories()
    assert [h.memory.pk for h in hybrid_search(viewer, "dogs", 5)] == [memory.pk]
    trashed(memory)
    assert hybrid_search(viewer, "dogs", 5) == [] and hybrid_search(viewer, "puppy", 5) == []
    memory_restore(actor=viewer, memory=memory.pk)
    assert [(h.memory.pk, h.match) for h in hybrid_search(viewer, "puppy", 5)] == [(memory.pk, "both")]


def test_a_pending_memory_in_the_trash_is_not_embedded_until_restored(make_user):
    memory = trashed(MemoryFactory(owner=make_user()))
    assert embed_due_memories() == 0
    memory_restore(actor=principal(memory.owner), memory=memory.pk)
    assert embed_due_memories() == 1
    assert Memory.objects.get(pk=memory.pk).embedding_status == EmbeddingStatus.READY


def test_the_event_log_replays_a_deleted_memory_as_gone_and_a_restored_one_as_back(make_user):
    owner = make_user()
    viewer = principal(make_user())
    memory = MemoryFactory(owner=owner)
    trashed(memory)

    def types():
        return [frame.split('"type":"')[1].split('"')[0] for frame in replay(viewer, 0, epoch=None).frames]

    assert types() == ["memory.deleted"]  # its creation is not replayed: the memory is gone
    memory_restore(actor=principal(owner), memory=memory.pk)
    assert types() == ["memory.created", "memory.deleted", "memory.restored"]


def test_the_web_list_and_its_snapshot_leave_out_the_trash(make_user):
    owner = make_user()
    trashed(MemoryFactory(owner=owner, title="Binned"))
    MemoryFactory(owner=owner, title="Kept")
    browser = Client()
    browser.force_login(owner)
    assert [m["title"] for m in browser.get("/snapshot.json").json()["memories"]] == ["Kept"]
    assert "Binned" not in browser.get("/").content.decode()


@pytest.mark.django_db(transaction=True)
async def test_a_restore_reaches_open_connections_that_may_see_it_as_memory_restored(make_user, client_for):
    owner, guest = await database_sync_to_async(lambda: (make_user(first_name="Ann"), make_user(Role.GUEST)))()
    member = await database_sync_to_async(make_user)()
    memory = await database_sync_to_async(MemoryFactory)(owner=owner, visibility=Visibility.TEAM)
    await database_sync_to_async(trashed)(memory)
    watcher = await connect(jwt_for(member), subscribe=["memories"])
    outsider = await connect(jwt_for(guest), subscribe=["memories"])
    api = await database_sync_to_async(client_for)(owner)
    assert (await database_sync_to_async(api.post)(f"{URL}{memory.pk}/restore/")).status_code == 200
    [event] = await frames(watcher)
    assert event["type"] == "memory.restored" and event["seq"] > 0
    assert (event["data"]["memory"]["id"], event["data"]["user_name"]) == (str(memory.pk), "Ann")
    assert await frames(outsider) == []  # a team memory: not the guest's to see
    await watcher.disconnect()
    await outsider.disconnect()


def logged_in(user, **kwargs) -> Client:
    browser = Client(**kwargs)
    browser.force_login(user)
    return browser


def test_the_web_restore_answers_a_fetch_with_204_and_a_form_with_a_redirect(make_user):
    owner = make_user()
    first, second = trashed(MemoryFactory(owner=owner)), trashed(MemoryFactory(owner=owner))
    browser = logged_in(owner)
    response = browser.post(f"/memories/{first.pk}/restore/", headers={"Accept": "application/json"})
    assert (response.status_code, response.content) == (204, b"")
    response = browser.post(f"/memories/{second.pk}/restore/")
    assert (response.status_code, response["Location"]) == (302, "/")
    assert Memory.objects.filter(pk__in=[first.pk, second.pk]).count() == 2


def test_the_web_restore_refuses_what_the_caller_may_not_restore(make_user):
    memory = trashed(MemoryFactory(owner=make_user(), visibility=Visibility.PRIVATE))
    browser = logged_in(make_user(Role.ADMIN))
    response = browser.post(f"/memories/{memory.pk}/restore/", headers={"Accept": "application/json"})
    assert response.status_code == 404 and "detail" in response.json()
    assert browser.post(f"/memories/{memory.pk}/restore/").status_code == 404
    team = trashed(MemoryFactory(owner=make_user(), visibility=Visibility.TEAM))
    assert logged_in(make_user()).post(f"/memories/{team.pk}/restore/").status_code == 403
    assert logged_in(make_user()).get(f"/memories/{team.pk}/restore/").status_code == 405


def test_the_web_restore_needs_the_csrf_token(make_user):
    owner = make_user()
    memory = trashed(MemoryFactory(owner=owner))
    browser = logged_in(owner, enforce_csrf_checks=True)
    assert browser.post(f"/memories/{memory.pk}/restore/").status_code == 403
    page = browser.get("/trash/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert browser.post(f"/memories/{memory.pk}/restore/", {"csrfmiddlewaretoken": token}).status_code == 302
    assert Memory.objects.filter(pk=memory.pk).exists()


def test_the_trash_page_lists_what_the_user_may_restore_with_a_restore_button_each(make_user):
    owner, admin = make_user(), make_user(Role.ADMIN)
    mine = trashed(MemoryFactory(owner=owner, title="<b>Binned</b> plans"))
    private = trashed(MemoryFactory(owner=owner, title="Private binned", visibility=Visibility.PRIVATE))
    MemoryFactory(owner=owner, title="Still here")
    page = logged_in(owner).get("/trash/").content.decode()
    assert "&lt;b&gt;Binned&lt;/b&gt; plans" in page and "Private binned" in page and "Still here" not in page
    assert page.count('<button type="submit" class="small">Restore') == 2
    assert f'action="/memories/{mine.pk}/restore/"' in page and "kept 30 days" in page
    admin_page = logged_in(admin).get("/trash/").content.decode()
    assert "Binned" in admin_page and "Private binned" not in admin_page and private.title
    assert "The trash is empty." in logged_in(make_user()).get("/trash/").content.decode()
