"""Publishing from sync code: one persistent publisher per process, a transaction's events in one round trip."""

import asyncio
import logging
import signal
import threading

import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from django.db import connection, transaction

from realtime import metrics
from realtime.node import node
from realtime.protocol import TENANT_UPDATES, tenant_group
from realtime.publish import publish
from tests.support.auth import bearer, jwt_for
from tests.support.factories import MemoryFactory
from tests.support.live import RedisServer
from tests.support.wsclient import connect, frames

pytestmark = pytest.mark.django_db(transaction=True)


def sync(fn, *args, **kwargs):
    return database_sync_to_async(fn)(*args, **kwargs)


@pytest.fixture
def own_redis(tmp_path, settings):
    """A redis-server of this test's own as the channel layer, so that its counters count only this test."""
    server = RedisServer(tmp_path)
    server.start()
    use_layer(server, settings)
    yield server
    server.stop()


def use_layer(server: RedisServer, settings, **options) -> None:
    """Make the server the channel layer, with settings.REDIS_OPTIONS overridden by `options`."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "realtime.layers.PipelinedPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": server.url, **settings.REDIS_OPTIONS, **options}]},
        }
    }
    channel_layers.backends.clear()


def write_in_one_transaction(owner, titles: list[str]) -> None:
    with transaction.atomic():
        for title in titles:
            MemoryFactory(owner=owner, title=title)


def write_on_a_thread(owner, title: str) -> None:
    try:
        write_in_one_transaction(owner, [title])
    finally:
        connection.close()


def presence_event(tenant_id: int) -> dict:
    data = {"user_id": "1", "user_name": "Probe", "connection_id": "probe"}
    return {"tenant_id": tenant_id, "event_type": "tenant.user_joined", "channel": TENANT_UPDATES, "data": data}


def round_trips(client: redis.Redis, action) -> int:
    """How many round trips Redis served for `action` and its publishes: its read events, less the INFO's."""
    before = client.info("stats")["total_reads_processed"]
    action()
    node().publisher.wait()
    return client.info("stats")["total_reads_processed"] - before - 1


def publishes(client: redis.Redis) -> int:
    return client.info("commandstats").get("cmdstat_publish", {}).get("calls", 0)


def test_a_transactions_events_go_in_one_round_trip(own_redis, make_user):
    owner = make_user()
    counters = redis.Redis.from_url(own_redis.url)
    publish(**presence_event(owner.membership.tenant_id), audience=None)  # the publisher connects
    node().publisher.wait()
    before = publishes(counters)
    assert round_trips(counters, lambda: write_in_one_transaction(owner, [f"m{i}" for i in range(5)])) == 1
    assert publishes(counters) - before == 5  # one PUBLISH an event, however many listen

    def three_transactions():
        for title in ("a", "b", "c"):
            write_in_one_transaction(owner, [title])
            node().publisher.wait()  # else the three may share a round trip

    assert round_trips(counters, three_transactions) == 3


def test_a_rolled_back_savepoint_publishes_only_what_survived(own_redis, make_user):
    owner = make_user()
    node().publisher.wait()  # the membership's access.changed
    listener = redis.Redis.from_url(own_redis.url).pubsub()
    listener.subscribe(f"asgi__group__{tenant_group(owner.membership.tenant_id)}")
    listener.get_message(timeout=1)  # the subscribe confirmation
    layer = channel_layers["default"]
    with transaction.atomic():
        MemoryFactory(owner=owner, title="kept")
        try:
            with transaction.atomic():
                MemoryFactory(owner=owner, title="undone")
                raise ValueError
        except ValueError:
            pass
        MemoryFactory(owner=owner, title="kept too")
    received = []
    while (message := listener.get_message(timeout=1)) is not None:
        received.append(layer.deserialize(message["data"])["data"]["memory"]["title"])
    assert received == ["kept", "kept too"]


async def test_sync_writes_reach_subscribers_on_the_redis_layer_across_a_restart(own_redis, make_user):
    owner = await sync(make_user)
    failures = metrics.publish_failures.labels(event="memory.created")
    comm = await connect(jwt_for(owner), subscribe=["memories"])
    await sync(write_in_one_transaction, owner, ["before 1", "before 2"])
    assert [f["data"]["memory"]["title"] for f in await frames(comm)] == ["before 1", "before 2"]
    await comm.disconnect()

    own_redis.stop()
    failed_before = failures._value.get()
    await sync(write_in_one_transaction, owner, ["during"])  # commits; the event log keeps it
    await asyncio.to_thread(node().publisher.wait)
    assert failures._value.get() == failed_before + 1

    own_redis.start()  # same port: the publisher's connection is stale and must reconnect
    listener = redis.Redis.from_url(own_redis.url).pubsub()
    listener.subscribe(f"asgi__group__{tenant_group(owner.membership.tenant_id)}")
    listener.get_message(timeout=1)
    await sync(write_in_one_transaction, owner, ["after"])
    message = listener.get_message(timeout=5)
    assert message is not None and b"after" in message["data"]
    assert failures._value.get() == failed_before + 1


async def test_sync_writes_from_threads_reach_subscribers_on_the_embedded_layer(make_user, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    owner = await sync(make_user)
    comm = await connect(jwt_for(owner), subscribe=["memories"])

    def writers():
        # Plain threads, as a worker or a request thread publishes: the publisher hops to the server's loop.
        threads = [threading.Thread(target=write_on_a_thread, args=(owner, f"t{i}")) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    await sync(writers)
    await sync(write_in_one_transaction, owner, ["x", "y", "z"])
    received = await frames(comm, quiet=0.5)
    assert [f["seq"] for f in received] == [1, 2, 3, 4, 5, 6]
    assert sorted(f["data"]["memory"]["title"] for f in received[:3]) == ["t0", "t1", "t2"]
    assert [f["data"]["memory"]["title"] for f in received[3:]] == ["x", "y", "z"]
    await comm.disconnect()


def test_a_write_does_not_wait_for_a_paused_redis_and_its_event_arrives_once_redis_resumes(
    own_redis, make_user, settings, caplog
):
    """The request commits and answers; the publish waits in the publisher, not in the request."""
    # A socket timeout longer than the test: on a slow machine the sends must still be waiting, not failed.
    use_layer(own_redis, settings, socket_timeout=120, health_check_interval=0)
    owner = make_user()
    publish(**presence_event(owner.membership.tenant_id), audience=None)  # the publisher connects
    node().publisher.wait(timeout=60)
    assert node().publisher.unsent == 0
    caplog.clear()  # what follows is the requests' own
    listener = redis.Redis.from_url(own_redis.url).pubsub()
    listener.subscribe(f"asgi__group__{tenant_group(owner.membership.tenant_id)}")
    listener.get_message(timeout=1)
    client = bearer(jwt_for(owner))
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        responses = [client.post("/api/v4/memories/", {"title": f"paused {i}"}, format="json") for i in range(3)]
        assert [r.status_code for r in responses] == [201, 201, 201]
        assert node().publisher.unsent == 3  # the sends still wait for Redis; the requests did not
        assert not [record for record in caplog.records if record.levelno >= logging.ERROR]  # nor timed out
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    node().publisher.wait(timeout=60)
    titles = []
    while (message := listener.get_message(timeout=2)) is not None:
        titles.append(channel_layers["default"].deserialize(message["data"])["data"]["memory"]["title"])
    assert titles == ["paused 0", "paused 1", "paused 2"]
