"""Presence queries and typing indicators over /ws."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from accounts.models import Role
from memories.models import Visibility
from realtime.redis_clients import aclose_loop_clients
from tests.support.auth import jwt_for
from tests.support.factories import MemoryFactory
from tests.support.live import RedisServer
from tests.support.wsclient import connect, frames

pytestmark = pytest.mark.django_db(transaction=True)


def sync(fn, *args, **kwargs):
    return database_sync_to_async(fn)(*args, **kwargs)


async def test_presence_lists_the_tenants_connected_users_with_their_connection_counts(make_user, other_tenant):
    ann, bob, outsider = await sync(
        lambda: (make_user(first_name="Ann"), make_user(first_name="Bob"), make_user(in_tenant=other_tenant))
    )
    comms = [await connect(jwt_for(user), subscribe=None) for user in (ann, ann, bob, outsider)]
    await comms[2].send_json_to({"type": "presence"})
    reply = await comms[2].receive_json_from()
    assert reply["type"] == "presence"
    assert reply["data"] == {
        "users": [
            {"user_id": str(ann.pk), "user_name": "Ann", "connections": 2},
            {"user_id": str(bob.pk), "user_name": "Bob", "connections": 1},
        ]
    }
    await comms[0].disconnect()
    await comms[2].send_json_to({"type": "presence"})
    assert (await comms[2].receive_json_from())["data"]["users"][0]["connections"] == 1
    for comm in comms[1:]:
        await comm.disconnect()


@pytest.fixture
def team(make_user):
    """A typist, a teammate, a guest, and a team memory of the typist's."""
    typist, teammate, guest = make_user(first_name="Tia"), make_user(), make_user(Role.GUEST)
    memory = MemoryFactory(owner=typist, visibility=Visibility.TEAM)
    return typist, teammate, guest, memory


async def test_presence_while_redis_is_down_is_an_error_frame_and_the_connection_goes_on(make_user, settings, tmp_path):
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    settings.REDIS_URL = redis_server.url  # the node follows it, on either tier
    try:
        comm = await connect(jwt_for(await sync(make_user)), subscribe=None)
        redis_server.stop()
        await comm.send_json_to({"type": "presence"})
        reply = await comm.receive_json_from(timeout=10)
        assert (reply["type"], reply["data"]) == (
            "error",
            {"message": "Presence is unavailable for a moment; ask again", "retry_after": 1.0},
        )
        await comm.send_json_to({"type": "ping"})
        assert (await comm.receive_json_from())["type"] == "pong"
        redis_server.start()  # back (empty, as a restarted Redis without persistence is): presence answers again
        await comm.send_json_to({"type": "presence"})
        assert (await comm.receive_json_from(timeout=10))["type"] == "presence"
        await comm.disconnect()
    finally:
        redis_server.stop()
        await aclose_loop_clients()


async def test_typing_reaches_those_who_may_see_the_memory_but_not_its_sender(team):
    typist, teammate, guest, memory = team
    sender = await connect(jwt_for(typist), subscribe=["memories"])
    other_tab = await connect(jwt_for(typist), subscribe=["memories"])
    watcher = await connect(jwt_for(teammate), subscribe=["memories"])
    outsider = await connect(jwt_for(guest), subscribe=["memories"])
    await sender.send_json_to({"type": "typing", "data": {"memory_id": str(memory.id)}})
    expected = {"memory_id": str(memory.id), "user_id": str(typist.pk), "user_name": "Tia"}
    for comm in (watcher, other_tab):
        [frame] = await frames(comm)
        assert (frame["type"], frame["data"]) == ("memory.typing", expected)
    assert await frames(sender) == []  # never echoed to the connection that typed
    assert await frames(outsider) == []  # a guest may not see a team memory
    for comm in (sender, other_tab, watcher, outsider):
        await comm.disconnect()


async def test_typing_is_relayed_once_a_memory_per_interval(team, make_user, settings):
    settings.PUOMEMO_WS_TYPING_INTERVAL_SECONDS = 1.0  # 2 s by default
    typist, teammate, _guest, memory = team
    second = await sync(MemoryFactory, owner=typist, visibility=Visibility.TEAM)
    sender = await connect(jwt_for(typist), subscribe=None)
    watcher = await connect(jwt_for(teammate), subscribe=["memories"])
    for memory_id in (memory.id, memory.id, memory.id, second.id):
        await sender.send_json_to({"type": "typing", "data": {"memory_id": str(memory_id)}})
    assert [f["data"]["memory_id"] for f in await frames(watcher)] == [str(memory.id), str(second.id)]
    await asyncio.sleep(settings.PUOMEMO_WS_TYPING_INTERVAL_SECONDS)
    await sender.send_json_to({"type": "typing", "data": {"memory_id": str(memory.id)}})
    assert [f["data"]["memory_id"] for f in await frames(watcher)] == [str(memory.id)]
    for comm in (sender, watcher):
        await comm.disconnect()


@pytest.mark.parametrize("memory_id", ["not-a-uuid", "private", "other tenant", "missing"])
async def test_typing_on_a_memory_the_sender_may_not_see_is_an_error(team, make_user, other_tenant, memory_id):
    typist, teammate, _guest, _memory = team

    def target() -> str:
        if memory_id == "private":
            return str(MemoryFactory(owner=teammate, visibility=Visibility.PRIVATE).id)
        if memory_id == "other tenant":
            return str(MemoryFactory(owner=make_user(in_tenant=other_tenant), visibility=Visibility.PUBLIC).id)
        if memory_id == "missing":
            return "00000000-0000-0000-0000-000000000000"
        return memory_id

    target_id = await sync(target)
    sender = await connect(jwt_for(typist), subscribe=None)
    watcher = await connect(jwt_for(teammate), subscribe=["memories"])
    await sender.send_json_to({"type": "typing", "data": {"memory_id": target_id}})
    reply = await sender.receive_json_from()
    assert (reply["type"], reply["data"]) == ("error", {"message": f"Unknown memory: {target_id}"})
    assert await frames(watcher) == []
    for comm in (sender, watcher):
        await comm.disconnect()


async def test_typing_without_a_memory_id_is_an_invalid_frame(team):
    sender = await connect(jwt_for(team[0]), subscribe=None)
    await sender.send_json_to({"type": "typing", "data": {}})
    reply = await sender.receive_json_from()
    assert reply["type"] == "error" and "typing needs data.memory_id" in reply["data"]["message"]
    await sender.disconnect()


async def test_typing_throttles_every_spelling_of_a_memory_id_as_one(team):
    typist, teammate, _guest, memory = team
    sender = await connect(jwt_for(typist), subscribe=None)
    watcher = await connect(jwt_for(teammate), subscribe=["memories"])
    for spelling in (str(memory.id).upper(), memory.id.hex, f"{{{memory.id}}}", f"urn:uuid:{memory.id}"):
        await sender.send_json_to({"type": "typing", "data": {"memory_id": spelling}})
    assert [f["data"]["memory_id"] for f in await frames(watcher)] == [str(memory.id)]
    for comm in (sender, watcher):
        await comm.disconnect()
