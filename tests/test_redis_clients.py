"""How Redis clients are made (realtime/redis_clients.py): shared, on blocking pools, and a connect that cannot get
Redis closes 1013 (try again later), never 1011. Against a real Redis: REDIS_URL's server, else 127.0.0.1:6379."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio
from channels.testing import WebsocketCommunicator

from realtime.limits import RedisConnectionRegistry
from realtime.node import node
from realtime.redis_clients import RedisTarget, aclose_loop_clients, async_client, sync_client
from realtime.routing import websocket_application
from tests.support.auth import bearer, jwt_for
from tests.support.live import RedisServer, free_port
from tests.support.workers import scratch_redis_url
from tests.support.wsclient import close_code

ROOT = Path(__file__).resolve().parent.parent
BURST = 300  # the outside storm test's size, which saw 76 connects closed 1011 by a pool that ran dry


@pytest.fixture
def scratch():
    """A raw client on a Redis database of the test's own, flushed before and after."""
    client = redis.Redis.from_url(scratch_redis_url())
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def clients_on(scratch: redis.Redis) -> int:
    """Connections open to the scratch database, less the scratch client's own."""
    db = scratch.connection_pool.connection_kwargs["db"]
    return sum(1 for client in scratch.client_list() if int(client["db"]) == db) - 1


async def test_a_burst_of_acquires_waits_for_a_tiny_pool_instead_of_failing(scratch, settings):
    settings.PUOMEMO_REDIS_POOL_SIZE = 2
    registry = RedisConnectionRegistry(RedisTarget(scratch_redis_url()))
    before = clients_on(scratch)  # clients an earlier test of this process left open on the database
    try:
        verdicts = await asyncio.gather(
            *(registry.acquire(f"c{i}", user_id=i, tenant_id=i % 10, user_name=f"u{i}") for i in range(BURST))
        )
        assert verdicts == [None] * BURST
        assert registry.counts(user_id=0, tenant_id=0)["total_connections"] == BURST
        assert clients_on(scratch) - before <= 2 + 2  # the loop's pool and the process's sync pool, each at most 2
    finally:
        await aclose_loop_clients()


async def test_the_same_burst_on_redis_pys_default_pool_runs_dry(scratch):
    # What the blocking pool is for: redis-py's default pool refuses past its size at once.
    client = redis.asyncio.Redis.from_url(scratch_redis_url(), max_connections=2)
    try:
        results = await asyncio.gather(*(client.incr("n") for _ in range(BURST)), return_exceptions=True)
        assert any(isinstance(result, redis.exceptions.MaxConnectionsError) for result in results)
    finally:
        await client.aclose()


async def test_clients_are_shared_per_process_and_per_event_loop(settings):
    target = RedisTarget(scratch_redis_url())
    assert sync_client(target) is sync_client(target)
    assert async_client(target) is async_client(target)
    other_loop = await asyncio.to_thread(asyncio.run, _client_of_a_new_loop(target))
    assert other_loop != id(async_client(target))
    await aclose_loop_clients()


async def _client_of_a_new_loop(target: RedisTarget) -> int:
    client = async_client(target)
    await aclose_loop_clients()
    return id(client)


@pytest.mark.django_db(transaction=True)
async def test_a_connect_that_waits_past_the_pool_timeout_closes_1013_and_holds_nothing(make_user, scratch, settings):
    settings.REDIS_URL = scratch_redis_url()  # the node follows it, on either tier
    settings.PUOMEMO_REDIS_POOL_SIZE = 1
    settings.PUOMEMO_REDIS_POOL_TIMEOUT_SECONDS = 0.2
    member = await asyncio.to_thread(make_user)
    # The loop's only pooled connection is busy for 2 s with a blocking pop.
    busy = asyncio.ensure_future(node().registry.client.blpop(["nothing"], 2))
    await asyncio.sleep(0.1)
    comm = WebsocketCommunicator(websocket_application(), f"/ws?token={jwt_for(member)}")
    assert (await comm.connect())[0]
    assert await close_code(comm) == 1013
    await comm.disconnect()
    await busy
    counts = await asyncio.to_thread(node().registry.counts, member.pk, member.membership.tenant_id)
    assert counts["user_connections"] == 0
    await aclose_loop_clients()


@pytest.mark.django_db(transaction=True)
async def test_a_connect_while_redis_is_unreachable_closes_1013(make_user, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    member = await asyncio.to_thread(make_user)
    comm = WebsocketCommunicator(websocket_application(), f"/ws?token={jwt_for(member)}")
    assert (await comm.connect())[0]
    assert await close_code(comm) == 1013
    await comm.disconnect()
    await aclose_loop_clients()


def test_a_request_gives_up_on_a_paused_redis_after_its_own_timeout(make_user, settings, tmp_path):
    """A stalled Redis holds one of the few HTTP threads for about two request timeouts, not two socket timeouts."""
    server = RedisServer(tmp_path)
    server.start()
    settings.REDIS_URL = server.url
    settings.PUOMEMO_REDIS_REQUEST_TIMEOUT_SECONDS = 0.5
    client = bearer(jwt_for(make_user()))
    assert client.post("/api/v4/ws/ticket").status_code == 201  # connected while Redis answers
    server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = client.post("/api/v4/ws/ticket")
        waited = time.monotonic() - started
    finally:
        server.process.send_signal(signal.SIGCONT)
        server.stop()
    assert response.status_code == 503
    # Two tries of 0.5 s; the 5 s socket timeout of the other clients would make it 10 s.
    assert waited < settings.REDIS_OPTIONS["socket_timeout"], waited


def settings_error(**env: str) -> list[str]:
    """stderr of a management command run with these settings (and no Redis from outside), as lines."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("REDIS_")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env={**clean, "PUOMEMO_ENV_FILE": os.devnull, "DEBUG": "1", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout
    return [line for line in result.stderr.splitlines() if "insecure development key" not in line]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"REDIS_SENTINELS": "sentinel-1", "REDIS_SENTINEL_MASTER": "puomemo"},
            "REDIS_SENTINELS must be host:port[,host:port…], got 'sentinel-1'",
        ),
        (
            {"REDIS_SENTINELS": "a:26379,b:99999", "REDIS_SENTINEL_MASTER": "puomemo"},
            "REDIS_SENTINELS must be host:port[,host:port…], got 'a:26379,b:99999'",
        ),
        (
            {"REDIS_SENTINELS": "a:26379"},
            "REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together: set both or neither.",
        ),
        (
            {"REDIS_SENTINELS": "a:26379", "REDIS_SENTINEL_MASTER": "puomemo", "REDIS_URL": "redis://a:6379/0"},
            "REDIS_URL and REDIS_SENTINELS both name the Redis: set one of them.",
        ),
        (
            {"REDIS_PUBSUB_URLS": "redis://a:6379/0,b:6379"},
            "REDIS_PUBSUB_URLS must be redis:// URLs, got 'b:6379'",
        ),
        (
            {"REDIS_PUBSUB_URLS": "redis://a:6379/0"},
            "REDIS_PUBSUB_URLS needs REDIS_URL or REDIS_SENTINELS for the connection registry.",
        ),
    ],
)
def test_a_malformed_redis_setting_stops_the_process_in_one_line(env, message):
    assert settings_error(**env) == [f"manage.py: {message}"]


def test_sentinel_and_shard_settings_become_the_channel_layers_hosts():
    show = (
        "import json; from django.conf import settings as s; "
        "print(json.dumps([{k: h[k] for k in ('address', 'sentinels', 'master_name') if k in h}"
        " for h in s.CHANNEL_LAYERS['default']['CONFIG']['hosts']]))"
    )
    clean = {key: value for key, value in os.environ.items() if not key.startswith("REDIS_")}

    def hosts(**env: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-v", "0", "-c", show],
            env={**clean, "PUOMEMO_ENV_FILE": os.devnull, "DEBUG": "1", **env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return result.stdout.strip()

    sentinel = hosts(REDIS_SENTINELS="s1:26379, [::1]:26380", REDIS_SENTINEL_MASTER="puomemo")
    assert sentinel == '[{"sentinels": [["s1", 26379], ["::1", 26380]], "master_name": "puomemo"}]'
    shards = hosts(REDIS_URL="redis://main:6379/0", REDIS_PUBSUB_URLS="redis://a:6379/0,redis://b:6379/0")
    assert shards == '[{"address": "redis://a:6379/0"}, {"address": "redis://b:6379/0"}]'
