"""Two real daphne processes on a Redis of the test's own, which the tests stop and restart.

Caps and counts held past every TTL on several instances are tested once, with nginx in front of three of them:
tests/test_live_nginx.py `test_events_caps_and_counts_across_instances_held_past_every_ttl` (this module's
copy of it was merged there)."""

import asyncio
import json
import time

import pytest
import websockets

from tests.support.live import api, close_code, metric, next_of_type, ready

pytestmark = pytest.mark.live

DEEPLY_NESTED = '{"type":"ping","data":' + "[" * 100_000 + "]" * 100_000 + "}"
# PUOMEMO_WS_REGISTRY_REFRESH_SECONDS of the servers: after the restart, counts are re-stamped within 2 s.
REFRESH_SECONDS = 2


@pytest.fixture(scope="module")
def faulty(cluster_factory):
    """Servers A and B sharing one database and one Redis that tests may stop."""
    cluster = cluster_factory(
        "faults",
        users={"alice": ("live", "admin"), "bob": ("live", "member"), "carol": ("live", "guest")},
        settings={
            "PUOMEMO_WS_MAX_CONNECTIONS_PER_USER": "2",
            "PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT": "4",
            "PUOMEMO_WS_REGISTRY_REFRESH_SECONDS": str(REFRESH_SECONDS),
        },
    )
    a, b = cluster.servers
    return {"a": a, "b": b, "keys": cluster.keys, "redis": cluster.redis}


def status(server, key: str) -> tuple[int, dict]:
    return api(server, "GET", "/api/v4/ws/status", key)


async def test_redis_outage_and_restart(faulty):
    a, b, keys, redis_server = faulty["a"], faulty["b"], faulty["keys"], faulty["redis"]
    watcher = await ready(b.ws, keys["bob"])
    await watcher.send(json.dumps({"type": "subscribe", "data": {"channels": ["memories", "tenant.updates"]}}))
    await next_of_type(watcher, "subscribed")
    leaver = await ready(a.ws, keys["carol"])
    await next_of_type(watcher, "tenant.user_joined")

    redis_server.stop()
    failures = 'puomemo_publish_failures_total{event="memory.created"}'
    before = await asyncio.to_thread(metric, a, failures)
    # A committed write is reported as committed, once, even though its event cannot be sent.
    code, created = await asyncio.to_thread(api, a, "POST", "/api/v4/memories/", keys["alice"], {"title": "in outage"})
    assert code == 201 and created["title"] == "in outage"
    # Published off the request thread: the failure counts once the publisher has tried and given up.
    deadline = time.monotonic() + 15
    while (failed := await asyncio.to_thread(metric, a, failures)) == before and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert failed == before + 1
    code, body = await asyncio.to_thread(status, a, keys["bob"])
    assert code == 503 and "Redis" in body["detail"]

    redis_server.start()  # empty: a restart without persistence loses every count
    deadline = time.monotonic() + 25
    while True:
        code, body = await asyncio.to_thread(status, b, keys["bob"])
        if code == 200 and body["tenant_connections"] == 2:
            break  # both open sockets count again
        assert time.monotonic() < deadline, (code, body)
        await asyncio.sleep(1)

    await leaver.close()
    left = await asyncio.wait_for(next_of_type(watcher, "tenant.user_left"), 15)
    assert left["data"]["user_name"] == "carol"
    code, after = await asyncio.to_thread(api, a, "POST", "/api/v4/memories/", keys["alice"], {"title": "after"})
    assert code == 201
    event = await asyncio.wait_for(next_of_type(watcher, "memory.created"), 15)
    assert event["data"]["memory"]["id"] == after["id"]
    code, listing = await asyncio.to_thread(api, a, "GET", "/api/v4/memories/?q=in%20outage", keys["alice"])
    assert [m["id"] for m in listing["results"]] == [created["id"]]
    await watcher.close()


async def test_deeply_nested_json_is_answered_and_locks_nobody_out(faulty):
    a, keys = faulty["a"], faulty["keys"]
    for _ in range(3):  # more connections than the user's cap of 2: each must be released
        async with websockets.connect(f"{a.ws}?token={keys['bob']}", max_size=None) as ws:
            for _ in range(4):
                await ws.send(DEEPLY_NESTED)
                assert json.loads(await ws.recv())["data"] == {"message": "Invalid message format"}
            await ws.send(DEEPLY_NESTED)
            assert await close_code(ws) == 4003
    both = [await ready(a.ws, keys["bob"]) for _ in range(2)]
    for ws in both:
        await ws.close()
