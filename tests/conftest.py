import json
import os
from collections.abc import Iterator

import msgpack
import pytest
import websockets.asyncio.connection
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from playwright.sync_api import Browser, sync_playwright

from accounts.auth_cache import auth_cache
from accounts.models import Role
from realtime import catalogue
from realtime.delivery import REPLAY_THREADS
from realtime.node import Node, using
from realtime.redis_clients import RedisTarget
from tests.support.auth import bearer, jwt_for
from tests.support.factories import TenantFactory, UserFactory
from tests.support.live import ClusterFactory, from_puomemo
from tests.support.workers import worker_layer_prefix, worker_redis_url


def pytest_configure(config):
    """Under pytest-xdist, each worker's in-process Redis use (registry, tickets, and the processes its tests start
    with its environment) goes to a Redis database of its own, and its channel layer to a prefix of its own
    (pub/sub channels are server-wide, whatever the database): tests/support/workers.py."""
    if settings.REDIS_URL and os.environ.get("PYTEST_XDIST_WORKER"):
        url = worker_redis_url(settings.REDIS_URL)
        settings.REDIS_URL = os.environ["REDIS_URL"] = url
        layer = settings.CHANNEL_LAYERS["default"]["CONFIG"]
        layer["hosts"][0]["address"] = url
        layer["prefix"] = worker_layer_prefix()


TIERS = ("live", "browser", "node")  # the markers of pyproject.toml; the fast tier is every test without one


# The longest modules of the slow tiers (measured: 1-2.5 minutes each on 2 cores), started first so that the
# pytest-xdist workers (which take whole modules with --dist loadfile) do not end on one of them.
LONGEST_FIRST = (
    "test_live_servers.py",
    "test_live_event_log.py",
    "test_embedding_worker.py",
    "test_browser.py",
    "test_live_nginx.py",
    "test_live_redis_ha.py",
)


def pytest_collection_modifyitems(config, items):
    """A test that starts servers through cluster_factory belongs to a slow tier: refuse to run it unmarked.
    The longest modules go first; each module's tests keep their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    for item in items:
        if "cluster_factory" in item.fixturenames and not any(item.get_closest_marker(tier) for tier in TIERS):
            raise pytest.UsageError(
                f"{item.nodeid} starts servers (cluster_factory) but is not marked {' or '.join(TIERS)}"
            )


@pytest.fixture(autouse=True)
def empty_auth_cache():
    """Each test authenticates its tokens afresh."""
    auth_cache.clear()
    yield
    auth_cache.clear()


@pytest.fixture(autouse=True)
def fresh_realtime_state():
    """Each test gets new channel layers and a real-time node of its own, with empty counts (in Redis too)."""
    channel_layers.backends.clear()
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter("puomemo:ws:*"):
            client.delete(key)
    with using(Node(RedisTarget.from_settings())):
        yield
    channel_layers.backends.clear()


# Threads that may keep a pooled connection between tests: channels' test communicators skip the close after each
# database_sync_to_async call, so asgiref's thread-sensitive thread and the resume page threads keep theirs, and the
# test's own thread holds one until its transaction ends.
LONG_LIVED_CONNECTIONS = 1 + REPLAY_THREADS + 1


@pytest.fixture(autouse=True)
def pooled_connections_come_back():
    """On PostgreSQL, a test leaves no more connections out of the pool than the long-lived threads hold: a thread
    that ends with one never hands it back, and a handful of such tests starve every later one (PoolTimeout)."""
    yield
    connection = connections["default"]
    if connection.vendor == "postgresql" and connection.pool is not None:
        stats = connection.pool.get_stats()
        out = stats["pool_size"] - stats["pool_available"]
        assert out <= LONG_LIVED_CONNECTIONS, f"{out} pooled connections are still out after the test: {stats}"


@pytest.fixture(scope="session", autouse=True)
def close_connections_of_async_tests(django_db_setup, django_db_blocker):
    """Close the database connections async tests opened on other threads, before the test DB is dropped."""
    yield
    with django_db_blocker.unblock():
        async_to_sync(database_sync_to_async(connections.close_all))()
        connection = connections["default"]
        if connection.vendor == "postgresql":
            # Threads of a closed event loop (the hub's background checks) may still hold one.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(autouse=True)
def frames_match_the_catalogue(monkeypatch):
    """Every frame any test receives, from the communicator or a real server, must match the event catalogue."""
    receive_output = WebsocketCommunicator.receive_output
    recv = websockets.asyncio.connection.Connection.recv

    async def checked_output(self, *args, **kwargs):
        message = await receive_output(self, *args, **kwargs)
        if message.get("text") is not None:
            catalogue.check_frame(json.loads(message["text"]))
        elif message.get("bytes") is not None:  # a MessagePack connection's frames
            catalogue.check_frame(msgpack.unpackb(message["bytes"]))
        return message

    async def checked_recv(self, *args, **kwargs):
        data = await recv(self, *args, **kwargs)
        if isinstance(data, str):
            catalogue.check_frame(json.loads(data))
        elif isinstance(data, bytes) and self.subprotocol == "puomemo.msgpack" and from_puomemo(self):
            catalogue.check_frame(msgpack.unpackb(data))  # what a MessagePack connection receives
        return data

    monkeypatch.setattr(WebsocketCommunicator, "receive_output", checked_output)
    monkeypatch.setattr(websockets.asyncio.connection.Connection, "recv", checked_recv)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def tenant(db):
    return TenantFactory()


@pytest.fixture
def other_tenant(db):
    return TenantFactory()


@pytest.fixture
def make_user(tenant):
    def make(role: str = Role.MEMBER, *, in_tenant=None, **kwargs):
        return UserFactory(membership__tenant=in_tenant or tenant, membership__role=role, **kwargs)

    return make


@pytest.fixture
def client_for():
    """An API client authenticated as the user with a JWT."""
    return lambda user: bearer(jwt_for(user))


@pytest.fixture(scope="module")
def cluster_factory(tmp_path_factory):
    """Start real server clusters (tests/support/live.py `start_cluster`) for a module: `cluster_factory(name,
    users=..., settings=..., count=..., args=..., redis=...)`; every one is stopped when the module ends."""
    factory = ClusterFactory(tmp_path_factory)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, one for a browser test module."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A folder for a browser test module's screenshots and traces."""
    return tmp_path_factory.mktemp("test-artifacts")
