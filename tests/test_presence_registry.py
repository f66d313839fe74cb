"""Presence over the connection registry: who holds connections in a tenant, on every process, with dead ones expiring.

The Redis registry runs against a real Redis (REDIS_URL's server, else 127.0.0.1:6379) on database 13 (12, 11, …
for pytest-xdist's workers gw1, gw2, …: each flushes its own), in every run; the wall clock of realtime.limits is a
fake the tests move, so expiry takes no real time.
"""

import time

import pytest
import redis

from realtime import limits
from realtime.limits import LocalConnectionRegistry, RedisConnectionRegistry, entry_ttl, refresh_seconds
from realtime.redis_clients import RedisTarget, aclose_loop_clients
from tests.support.workers import scratch_redis_url

TENANT, OTHER_TENANT = 1, 2
TENANT_KEY, WHO_KEY = f"puomemo:ws:tenant:{TENANT}", f"puomemo:ws:tenant:{TENANT}:who"


class Clock:
    """Stands in for the `time` module inside realtime.limits: wall time moves only when a test moves it."""

    monotonic = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(limits, "time", clock)
    return clock


@pytest.fixture
def redis_db():
    """A raw client on the test database, flushed before and after."""
    client = redis.Redis.from_url(scratch_redis_url(), decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


async def _close(registry: RedisConnectionRegistry) -> None:
    await aclose_loop_clients()


@pytest.fixture
async def redis_registry(redis_db):
    registry = RedisConnectionRegistry(RedisTarget(scratch_redis_url()))
    yield registry
    await _close(registry)


@pytest.fixture(params=["local", "redis"])
async def registry(request):
    if request.param == "local":
        yield LocalConnectionRegistry()
        return
    request.getfixturevalue("redis_db")
    registry = RedisConnectionRegistry(RedisTarget(scratch_redis_url()))
    yield registry
    await _close(registry)


def user(user_id: int, user_name: str, connections: int) -> dict:
    return {"user_id": str(user_id), "user_name": user_name, "connections": connections}


async def test_each_user_once_with_their_connection_count_sorted_by_name(registry):
    assert await registry.acquire("c1", 7, TENANT, "zoe") is None
    assert await registry.acquire("c2", 3, TENANT, "alice") is None
    assert await registry.acquire("c3", 7, TENANT, "zoe") is None

    assert await registry.presence(TENANT) == [user(3, "alice", 1), user(7, "zoe", 2)]
    # counts() answers as before, from the same entries.
    assert registry.counts(7, TENANT) == {"user_connections": 2, "tenant_connections": 3, "total_connections": 3}


async def test_users_of_the_same_name_are_ordered_by_numeric_id(registry):
    for connection_id, user_id in [("c1", 12), ("c2", 3), ("c3", 100)]:
        await registry.acquire(connection_id, user_id, TENANT, "sam")
    await registry.acquire("c4", 50, TENANT, "Ann")

    assert [(u["user_name"], u["user_id"]) for u in await registry.presence(TENANT)] == [
        ("Ann", "50"),
        ("sam", "3"),
        ("sam", "12"),
        ("sam", "100"),
    ]


async def test_release_removes_and_other_tenants_never_appear(registry):
    await registry.acquire("c1", 7, TENANT, "zoe")
    await registry.acquire("c2", 7, TENANT, "zoe")
    await registry.acquire("c3", 3, TENANT, "alice")
    await registry.acquire("o1", 9, OTHER_TENANT, "mallory")

    assert await registry.presence(TENANT) == [user(3, "alice", 1), user(7, "zoe", 2)]
    assert await registry.presence(OTHER_TENANT) == [user(9, "mallory", 1)]
    assert await registry.presence(99) == []

    await registry.release("c1", 7, TENANT)
    assert await registry.presence(TENANT) == [user(3, "alice", 1), user(7, "zoe", 1)]
    await registry.release("c3", 3, TENANT)
    await registry.release("c2", 7, TENANT)
    assert await registry.presence(TENANT) == []
    assert await registry.presence(OTHER_TENANT) == [user(9, "mallory", 1)]


async def test_user_names_with_colons_quotes_and_unicode_come_back_unchanged(registry):
    names = {1: "a:b:c", 2: 'Zoë "Z" 名前', 3: '{"user_id": 1}'}
    for user_id, name in names.items():
        await registry.acquire(f"c{user_id}", user_id, TENANT, name)

    assert {u["user_id"]: u["user_name"] for u in await registry.presence(TENANT)} == {
        str(user_id): name for user_id, name in names.items()
    }


async def test_a_refused_connection_is_not_present(registry, settings):
    settings.PUOMEMO_WS_MAX_CONNECTIONS_PER_USER = 1
    await registry.acquire("c1", 7, TENANT, "zoe")
    assert await registry.acquire("c2", 7, TENANT, "zoe") == "user"

    assert await registry.presence(TENANT) == [user(7, "zoe", 1)]


async def test_presence_is_the_same_from_every_process(redis_registry, redis_db):
    other_process = RedisConnectionRegistry(RedisTarget(scratch_redis_url()))
    try:
        await redis_registry.acquire("a1", 1, TENANT, "ann")
        await other_process.acquire("b1", 2, TENANT, "bob")
        await other_process.acquire("b2", 1, TENANT, "ann")

        expected = [user(1, "ann", 2), user(2, "bob", 1)]
        assert await redis_registry.presence(TENANT) == expected
        assert await other_process.presence(TENANT) == expected
    finally:
        await _close(other_process)


async def test_a_dead_process_entries_vanish_within_entry_ttl(redis_registry, redis_db, clock):
    live_process, dead_process = redis_registry, RedisConnectionRegistry(RedisTarget(scratch_redis_url()))
    try:
        start = clock.now
        await live_process.acquire("a1", 1, TENANT, "ann")
        await dead_process.acquire("b1", 2, TENANT, "bob")  # then its process dies: no more refreshes
        for tick in range(1, 4):
            clock.now = start + tick * refresh_seconds() - 0.5
            await live_process.refresh(lambda: [("a1", 1, TENANT, "ann")])
            # Not before the bound: within entry_ttl() a slow process has not been given up on.
            assert await live_process.presence(TENANT) == [user(1, "ann", 1), user(2, "bob", 1)]

        clock.now = start + entry_ttl() + 0.01
        assert await live_process.presence(TENANT) == [user(1, "ann", 1)]
        assert await dead_process.presence(TENANT) == [user(1, "ann", 1)]
        assert live_process.counts(2, TENANT) == {
            "user_connections": 0,
            "tenant_connections": 1,
            "total_connections": 1,
        }
    finally:
        await _close(dead_process)


async def test_one_refresh_after_a_redis_restart_recreates_presence_and_counts(redis_registry, redis_db):
    entries = [("c1", 7, TENANT, "zoe"), ("c2", 3, TENANT, "alice"), ("c3", 7, TENANT, "zoe")]
    for entry in entries:
        connection_id, user_id, tenant_id, user_name = entry
        await redis_registry.acquire(connection_id, user_id, tenant_id, user_name)
    before = await redis_registry.presence(TENANT)

    redis_db.flushdb()  # a restart without persistence
    assert await redis_registry.presence(TENANT) == []
    assert redis_registry.counts(7, TENANT) == {"user_connections": 0, "tenant_connections": 0, "total_connections": 0}

    await redis_registry.refresh(lambda: entries)
    assert await redis_registry.presence(TENANT) == before == [user(3, "alice", 1), user(7, "zoe", 2)]
    assert redis_registry.counts(7, TENANT) == {"user_connections": 2, "tenant_connections": 3, "total_connections": 3}
    # The re-created keys expire like the originals, so a later death still clears them.
    assert 0 < redis_db.ttl(WHO_KEY) <= entry_ttl()
    assert 0 < redis_db.ttl(TENANT_KEY) <= entry_ttl()


async def test_the_who_hash_keeps_no_fields_of_released_or_expired_connections(redis_registry, redis_db, clock):
    start = clock.now
    await redis_registry.acquire("expired", 1, TENANT, "ann")
    await redis_registry.acquire("released", 2, TENANT, "bob")
    clock.now = start + 20
    await redis_registry.acquire("kept", 3, TENANT, "cy")
    assert 0 < redis_db.ttl(WHO_KEY) <= entry_ttl()

    await redis_registry.release("released", 2, TENANT)
    assert set(redis_db.hkeys(WHO_KEY)) == {"expired", "kept"}

    clock.now = start + entry_ttl() + 1  # "expired" was never refreshed; "kept" is still within its TTL
    await redis_registry.acquire("new", 4, TENANT, "dee")
    assert await redis_registry.presence(TENANT) == [user(3, "cy", 1), user(4, "dee", 1)]
    # The expired entry waits, uncounted, for a reap, which returns it once to one caller and clears both.
    other_process = RedisConnectionRegistry(RedisTarget(scratch_redis_url()))
    try:
        assert await redis_registry.reap(TENANT) == [("expired", 1, "ann")]
        assert await other_process.reap(TENANT) == []
    finally:
        await _close(other_process)
    assert set(redis_db.hkeys(WHO_KEY)) == {"kept", "new"}
    assert set(redis_db.zrange(TENANT_KEY, 0, -1)) == {"kept", "new"}
