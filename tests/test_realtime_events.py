"""Memory writes reach exactly the connections that may see them, in the spec's shapes."""

import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from accounts.models import Role
from memories.models import Memory, Visibility
from tests.support.auth import jwt_for
from tests.support.factories import MemoryFactory
from tests.support.wsclient import connect, frames

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v4/memories/"


def sync(fn, *args, **kwargs):
    return database_sync_to_async(fn)(*args, **kwargs)


async def test_rest_writes_arrive_in_the_spec_shapes(make_user, client_for):
    ann, bob = await sync(lambda: (make_user(first_name="Ann"), make_user()))
    watcher = await connect(jwt_for(bob), subscribe=["memories"])
    api = await sync(client_for, ann)

    created = (await sync(api.post, URL, {"title": "T", "content": "C", "tags": ["x"]}, format="json")).json()
    [event] = await frames(watcher)
    assert set(event) == {"id", "type", "timestamp", "data", "seq", "epoch"}
    assert (event["type"], event["seq"]) == ("memory.created", 1)
    assert event["data"] == {
        "memory": {
            "id": created["id"],
            "title": "T",
            "content": "C",
            "tags": ["x"],
            "visibility": "team",
            "version": 1,
            "created_at": created["created_at"],
            "updated_at": created["updated_at"],
        },
        "user_id": str(ann.pk),
        "user_name": "Ann",
    }

    await sync(api.patch, f"{URL}{created['id']}/", {"content": "C2", "title": "T"}, format="json")
    [event] = await frames(watcher)
    assert (event["type"], event["seq"]) == ("memory.updated", 2)
    assert event["data"]["changes"] == {"content": "C2"}
    assert (event["data"]["memory"]["content"], event["data"]["memory"]["version"]) == ("C2", 2)

    await sync(api.delete, f"{URL}{created['id']}/")
    [event] = await frames(watcher)
    assert (event["type"], event["seq"], event["data"]) == (
        "memory.deleted",
        3,
        {"memory_id": created["id"], "title": "T", "user_id": str(ann.pk), "user_name": "Ann"},
    )
    await watcher.disconnect()


async def test_an_update_that_changes_nothing_visible_sends_nothing(make_user):
    owner = await sync(make_user)
    memory = await sync(MemoryFactory, owner=owner)
    watcher = await connect(jwt_for(owner), subscribe=["memories"])

    def touch():
        fresh = Memory.objects.get(pk=memory.pk)
        fresh.embedding_status = "ready"
        fresh.save()

    await sync(touch)
    assert await frames(watcher) == []
    await watcher.disconnect()


async def test_a_rolled_back_write_sends_nothing(make_user):
    owner = await sync(make_user)
    watcher = await connect(jwt_for(owner), subscribe=["memories"])

    def write_then_fail():
        with pytest.raises(RuntimeError), transaction.atomic():
            MemoryFactory(owner=owner)
            raise RuntimeError("rolled back")

    await sync(write_then_fail)
    assert await frames(watcher) == []
    assert await sync(Memory.objects.count) == 0
    await sync(MemoryFactory, owner=owner)  # the watcher is alive: a committed write arrives
    assert [e["type"] for e in await frames(watcher)] == ["memory.created"]
    await watcher.disconnect()


async def test_plain_orm_and_admin_writes_are_published(make_user, client):
    owner = await sync(make_user, Role.ADMIN, is_staff=True, is_superuser=True)
    watcher = await connect(jwt_for(owner), subscribe=["memories"])
    memory = await sync(MemoryFactory, owner=owner, title="orm")
    [event] = await frames(watcher)
    assert (event["type"], event["data"]["user_id"]) == ("memory.created", str(owner.pk))

    await sync(client.force_login, owner)
    form = {"tenant": memory.tenant_id, "owner": owner.pk, "title": "admin", "content": "c", "tags": "[]"}
    await sync(client.post, f"/admin/memories/memory/{memory.pk}/change/", {**form, "visibility": "team"})
    [event] = await frames(watcher)
    assert event["type"] == "memory.updated"
    assert event["data"]["changes"] == {"title": "admin", "content": "c", "tags": []}
    await watcher.disconnect()


async def test_only_subscribed_channels_are_delivered(make_user):
    owner = await sync(make_user)
    presence_only = await connect(jwt_for(owner), subscribe=["tenant.updates"])
    nothing = await connect(jwt_for(owner), subscribe=None)
    await sync(MemoryFactory, owner=owner)
    assert [f["type"] for f in await frames(presence_only)] == ["tenant.user_joined"]
    assert await frames(nothing) == []
    await presence_only.disconnect()
    await nothing.disconnect()


# role of the watcher -> visibilities whose events it receives, for a memory owned by another member
RECEIVES = {
    "owner": {Visibility.PRIVATE, Visibility.TEAM, Visibility.PUBLIC},
    Role.ADMIN: {Visibility.TEAM, Visibility.PUBLIC},
    Role.MEMBER: {Visibility.TEAM, Visibility.PUBLIC},
    Role.GUEST: {Visibility.PUBLIC},
    "other tenant": set(),
}


@pytest.mark.parametrize("visibility", Visibility.values)
async def test_visibility_table_for_every_event_type(make_user, other_tenant, visibility):
    def people():
        owner = make_user(Role.MEMBER)
        return owner, {
            "owner": owner,
            Role.ADMIN: make_user(Role.ADMIN),
            Role.MEMBER: make_user(Role.MEMBER),
            Role.GUEST: make_user(Role.GUEST),
            "other tenant": make_user(Role.ADMIN, in_tenant=other_tenant),
        }

    owner, watchers = await sync(people)
    comms = {who: await connect(jwt_for(user), subscribe=["memories"]) for who, user in watchers.items()}

    def write():
        memory = MemoryFactory(owner=owner, visibility=visibility)
        memory.title = "changed"
        memory.save()
        memory.delete()

    await sync(write)
    for who, comm in comms.items():
        expected = ["memory.created", "memory.updated", "memory.deleted"] if visibility in RECEIVES[who] else []
        assert [f["type"] for f in await frames(comm)] == expected, who
        await comm.disconnect()


async def test_embedding_complete_follows_the_visibility_rule(make_user):
    from memories.embedding_service import embed_due_memories

    owner, teammate = await sync(lambda: (make_user(), make_user()))
    memory = await sync(MemoryFactory, owner=owner, visibility=Visibility.PRIVATE)
    comms = {
        who: await connect(jwt_for(user), subscribe=["memories"])
        for who, user in [("owner", owner), ("teammate", teammate)]
    }
    await frames(comms["owner"])  # the created event, already tested
    assert await sync(embed_due_memories) == 1
    [event] = await frames(comms["owner"])
    assert (event["type"], event["data"]) == (
        "memory.embedding_complete",
        {"memory_id": str(memory.id), "embedding_model": "all-MiniLM-L6-v2"},
    )
    assert await frames(comms["teammate"]) == []
    for comm in comms.values():
        await comm.disconnect()


def _expected_frame(who: str, before: str, after: str) -> tuple | None:
    saw, sees = before in RECEIVES[who], after in RECEIVES[who]
    if saw and sees:
        return ("memory.updated", None)
    if saw:
        return ("memory.deleted", "visibility")
    if sees:
        return ("memory.created", None)
    return None


@pytest.mark.parametrize("before", Visibility.values)
@pytest.mark.parametrize("after", Visibility.values)
async def test_visibility_transition_table(make_user, other_tenant, before, after):
    """Could see before and after: updated; before only: deleted (reason visibility); after only: created."""

    def people():
        owner = make_user(Role.MEMBER)
        watchers = {
            "owner": owner,
            Role.ADMIN: make_user(Role.ADMIN),
            Role.MEMBER: make_user(Role.MEMBER),
            Role.GUEST: make_user(Role.GUEST),
            "other tenant": make_user(Role.ADMIN, in_tenant=other_tenant),
        }
        return MemoryFactory(owner=owner, visibility=before, title="Before"), watchers

    memory, watchers = await sync(people)
    comms = {who: await connect(jwt_for(user), subscribe=["memories"]) for who, user in watchers.items()}

    def change():
        memory.title, memory.visibility = "After", after
        memory.save()

    await sync(change)
    for who, comm in comms.items():
        received = await frames(comm)
        expected = _expected_frame(who, before, after)
        assert [(f["type"], f["data"].get("reason")) for f in received] == ([expected] if expected else []), who
        if expected and expected[0] == "memory.deleted":
            # The title it had when the viewer could see it, never the one it got after.
            assert received[0]["data"] == {
                "memory_id": str(memory.id),
                "title": "Before",
                "user_id": str(memory.owner_id),
                "user_name": watchers["owner"].get_full_name() or watchers["owner"].username,
                "reason": "visibility",
            }
        elif expected:
            assert received[0]["data"]["memory"]["visibility"] == after
        await comm.disconnect()


async def test_giving_a_private_memory_to_another_owner(make_user):
    ann, bob, admin = await sync(lambda: (make_user(), make_user(), make_user(Role.ADMIN)))
    memory = await sync(MemoryFactory, owner=ann, visibility=Visibility.PRIVATE)
    comms = {
        who: await connect(jwt_for(user), subscribe=["memories"])
        for who, user in [("ann", ann), ("bob", bob), ("admin", admin)]
    }

    def give():
        memory.owner = bob  # as Django admin does: owner is not a client field
        memory.save()

    await sync(give)
    assert [(f["type"], f["data"].get("reason")) for f in await frames(comms["ann"])] == [
        ("memory.deleted", "visibility")
    ]
    assert [f["type"] for f in await frames(comms["bob"])] == ["memory.created"]
    assert await frames(comms["admin"]) == []
    for comm in comms.values():
        await comm.disconnect()


async def test_an_owner_change_of_a_team_memory_is_no_news(make_user):
    ann, bob = await sync(lambda: (make_user(), make_user()))
    memory = await sync(MemoryFactory, owner=ann, visibility=Visibility.TEAM)
    watcher = await connect(jwt_for(bob), subscribe=["memories"])

    def give():
        memory.owner = bob
        memory.save()

    await sync(give)
    assert await frames(watcher) == []
    await watcher.disconnect()
