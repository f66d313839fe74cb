"""Hostile frames and failing parts never skip a connection's cleanup, and never fail a committed write."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator

from memories.models import Memory
from realtime import delivery, fanout, metrics
from realtime.consumers import MemoryConsumer
from realtime.node import node
from realtime.routing import websocket_application
from tests.support.auth import jwt_for
from tests.support.factories import MemoryFactory
from tests.support.live import free_port
from tests.support.logs import assert_one_line
from tests.support.wsclient import close_code, connect, frames

pytestmark = pytest.mark.django_db(transaction=True)

DEEPLY_NESTED = '{"type":"ping","data":' + "[" * 100_000 + "]" * 100_000 + "}"


def sync(fn, *args, **kwargs):
    return database_sync_to_async(fn)(*args, **kwargs)


async def counts(user) -> dict[str, int]:
    return node().registry.counts(user.pk, user.membership.tenant_id)


def gauge() -> float:
    return metrics.connections._value.get()


@pytest.fixture
def member(make_user):
    return make_user()


async def test_deeply_nested_json_is_an_invalid_frame_not_a_crash(member, settings):
    settings.PUOMEMO_WS_INVALID_LIMIT_PER_MINUTE = 3
    comm = await connect(jwt_for(member), subscribe=None)
    for _ in range(2):
        await comm.send_to(text_data=DEEPLY_NESTED)
        reply = await comm.receive_json_from()
        assert (reply["type"], reply["data"]) == ("error", {"message": "Invalid message format"})
    await comm.send_to(text_data=DEEPLY_NESTED)
    assert await close_code(comm) == 4003  # counted towards the invalid-frame limit
    await comm.disconnect()
    assert (await counts(member))["user_connections"] == 0


async def test_an_exception_in_a_handler_closes_1011_and_still_cleans_up(member, make_user, monkeypatch):
    watcher = await connect(jwt_for(await sync(make_user)), subscribe=["tenant.updates"])
    before = gauge()
    comm = await connect(jwt_for(member), subscribe=None)
    assert [f["type"] for f in await frames(watcher)] == ["tenant.user_joined"]

    async def broken(self, message_type, data):
        raise RuntimeError("a bug")

    monkeypatch.setattr(MemoryConsumer, "handle", broken)
    await comm.send_json_to({"type": "ping"})
    assert await close_code(comm) == 1011
    await comm.disconnect()  # what daphne sends once the close handshake is done
    assert (await counts(member))["user_connections"] == 0
    assert gauge() == before
    assert [f["type"] for f in await frames(watcher)] == ["tenant.user_left"]
    await watcher.disconnect()


async def test_a_failure_while_joining_closes_1011_and_releases_the_count(member, monkeypatch):
    async def refuse(self, connection):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(fanout.Hub, "join", refuse)
    comm = WebsocketCommunicator(websocket_application(), f"/ws?token={jwt_for(member)}")
    assert (await comm.connect())[0]
    assert await close_code(comm) == 1011
    await comm.disconnect()
    assert (await counts(member))["user_connections"] == 0


async def test_a_subscribe_that_fails_once_after_a_redis_restart_is_retried(member, monkeypatch):
    layer = channel_layers["default"]
    group_add, failures = layer.group_add, []

    async def once_broken(group, channel):
        if not failures:  # what redis-py raises while it reconnects under the layer's reader
            failures.append(group)
            raise RuntimeError("readuntil() called while another coroutine is already waiting for incoming data")
        await group_add(group, channel)

    monkeypatch.setattr(layer, "group_add", once_broken)
    comm = await connect(jwt_for(member))  # accepted, subscribed and answering: not closed 1011
    assert failures
    await sync(MemoryFactory, owner=member)
    assert [f["type"] for f in await frames(comm, 1)] == ["memory.created"]
    await comm.disconnect()


async def test_every_cleanup_step_runs_when_an_earlier_one_fails(member, make_user, monkeypatch):
    watcher = await connect(jwt_for(await sync(make_user)), subscribe=["tenant.updates"])
    comm = await connect(jwt_for(member), subscribe=None)
    await frames(watcher)
    real_leave = fanout.Hub.leave

    async def leave_then_fail(self, connection):
        await real_leave(self, connection)
        raise ConnectionResetError("stale pooled connection")

    monkeypatch.setattr(fanout.Hub, "leave", leave_then_fail)
    await comm.disconnect()
    assert (await counts(member))["user_connections"] == 0
    assert [f["type"] for f in await frames(watcher)] == ["tenant.user_left"]
    monkeypatch.undo()
    await watcher.disconnect()


def _unreachable_redis(settings) -> str:
    """Point the channel layer at a port where no Redis listens: publishing fails as it does when Redis is down."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": url, **settings.REDIS_OPTIONS}]},
        }
    }
    channel_layers.backends.clear()
    return url


def test_a_write_commits_and_answers_201_when_publishing_fails(member, client_for, settings, caplog):
    _unreachable_redis(settings)
    failures = metrics.publish_failures.labels(event="memory.created")
    before = failures._value.get()
    response = client_for(member).post("/api/v4/memories/", {"title": "kept"}, format="json")
    assert response.status_code == 201, response.content
    assert Memory.objects.filter(pk=response.json()["id"], title="kept").exists()
    node().publisher.wait()
    assert failures._value.get() == before + 1
    assert_one_line(caplog, "Publishing memory.created for tenant")


def test_status_answers_json_503_when_redis_is_down(member, client_for, settings, caplog):
    settings.REDIS_URL = _unreachable_redis(settings)  # the node follows REDIS_URL
    response = client_for(member).get("/api/v4/ws/status")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert "Redis" in response.json()["detail"]
    assert_one_line(caplog, "Reading connection counts from Redis failed")


async def test_the_embedded_layer_keeps_a_feed_past_its_group_expiry(member, settings):
    # Channels' in-memory layer forgets a group member group_expiry seconds after it joined (a day by default).
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"group_expiry": 1}}
    }
    channel_layers.backends.clear()
    watcher = await connect(jwt_for(member), subscribe=["memories"])
    await asyncio.sleep(2.5)
    await sync(MemoryFactory, owner=member)
    assert [f["type"] for f in await frames(watcher)] == ["memory.created"]
    await watcher.disconnect()


def test_an_embedding_is_stored_when_publishing_fails(member, settings):
    from memories.embedding_service import embed_due_memories

    _unreachable_redis(settings)
    memory = MemoryFactory(owner=member, title="still embedded")
    assert embed_due_memories() == 1  # not marked failed for an event it could not send
    memory.refresh_from_db()
    assert memory.embedding_status == "ready"


async def test_an_application_cancelled_mid_replay_still_releases_everything(member, make_user, monkeypatch):
    """daphne cancels an application that has not ended 10 s after its client left: nothing may leak then."""
    watcher = await connect(jwt_for(await sync(make_user)), subscribe=["tenant.updates"])
    before = gauge()
    await sync(MemoryFactory, owner=member)
    comm = await connect(jwt_for(member))
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def stuck_replay(*args, **kwargs):
        loop.call_soon_threadsafe(started.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
        raise AssertionError("unreachable: the application was cancelled")

    monkeypatch.setattr(delivery, "replay", stuck_replay)
    await comm.send_json_to({"type": "resume", "data": {"last_seq": 0}})
    await asyncio.wait_for(started.wait(), 5)
    assert (await counts(member))["user_connections"] == 1
    comm.future.cancel()  # as daphne's application_checker does
    with pytest.raises(asyncio.CancelledError):
        await comm.future
    assert (await counts(member))["user_connections"] == 0
    assert gauge() == before
    assert not [c for c in node().hub().connections() if c.user_id == member.pk]
    assert "tenant.user_left" in [f["type"] for f in await frames(watcher)]
    release.set()
    await watcher.disconnect()
