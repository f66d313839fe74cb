"""Redis with failover and sharded: two real daphne instances on a Sentinel-managed Redis whose primary is SIGKILLed
under writes, and on two pub/sub shards (docs/deployment.md, "Redis failover (Sentinel)" and "Sharded pub/sub")."""

import asyncio
import json
import threading
import time

import pytest
import websockets
from channels_redis.utils import _consistent_hash

from tests.support.live import RedisServer, SentinelGroup, api, close_code, manage, next_of_type, ready

pytestmark = pytest.mark.live

# The servers re-stamp their connections every second here (10 s by default): what a failover lost is back within it.
REFRESH_SECONDS = 1
DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS = 1000, 3000
# Caps, counts, presence and pub/sub are right again within this of the kill: the sentinels' down-after time, their
# election, the clients' reconnect, and one refresh (the documented bound), with room for a loaded machine.
RECOVERY_BOUND_SECONDS = 15
WRITES, KILL_AFTER = 60, 15
GROUP_CHANNELS = "asgi__group__puomemo.tenant.*"


async def subscribed(url: str, key: str):
    ws = await ready(url, key)
    await ws.send(json.dumps({"type": "subscribe", "data": {"channels": ["memories", "tenant.updates"]}}))
    await next_of_type(ws, "subscribed")
    return ws


async def collect(ws, into: list[dict]) -> None:
    """Keep every memory event the socket receives, until it closes or the task is cancelled."""
    try:
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"].startswith("memory."):
                into.append(frame)
    except websockets.ConnectionClosed:
        into.append({"type": "closed"})


async def all_received(received: dict[str, list[dict]], count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(len(frames) < count for frames in received.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def sentinel_cluster(cluster_factory, tmp_path_factory):
    """Two servers whose Redis is found through three sentinels watching a primary and its replica."""
    group = SentinelGroup(tmp_path_factory.mktemp("sentinels"), down_after_ms=DOWN_AFTER_MS)
    cluster_factory.defer(group.stop)
    group.start()
    cluster = cluster_factory(
        "sentinel",
        users={"alice": ("acme", "member"), "bob": ("acme", "member"), "carol": ("acme", "member")},
        redis=False,
        settings={
            "REDIS_SENTINELS": group.setting,
            "REDIS_SENTINEL_MASTER": group.MASTER,
            "PUOMEMO_WS_REGISTRY_REFRESH_SECONDS": str(REFRESH_SECONDS),
            "PUOMEMO_WS_MAX_CONNECTIONS_PER_USER": "2",
        },
    )
    return group, cluster


def write_all(servers, key: str, on_write, statuses: list[int], written: list[str]) -> None:
    """POST the memories one after another, alternating instances, 20 a second."""
    for i in range(WRITES):
        code, body = api(servers[i % 2], "POST", "/api/v4/memories/", key, {"title": f"write {i}"})
        statuses.append(code)
        if code == 201:
            written.append(body["id"])
        on_write(i)
        time.sleep(0.05)


async def recovered(group: SentinelGroup, cluster, watcher) -> list[str]:
    """What is not right yet after the failover: [] once caps, counts, presence and pub/sub all are."""
    wrong = []
    if group.master_port() != group.replica.port:
        return ["the sentinels have not promoted the replica"]
    for server in cluster.servers:
        code, status = await asyncio.to_thread(api, server, "GET", "/api/v4/ws/status", cluster.keys["carol"])
        if code != 200 or status.get("tenant_connections") != 3:
            wrong.append(f"status on {server.port}: {code} {status}")
    await watcher.send(json.dumps({"type": "presence"}))
    # The answer, or an error while Redis cannot answer it yet.
    while (reply := json.loads(await asyncio.wait_for(watcher.recv(), 10)))["type"] not in ("presence", "error"):
        pass
    users = reply["data"].get("users")
    if [(user["user_name"], user["connections"]) for user in users or []] != [("alice", 1), ("bob", 1), ("carol", 1)]:
        wrong.append(f"presence {reply['data']}")
    with group.replica.client() as master:
        channels = master.pubsub_channels(GROUP_CHANNELS)
        if [count for _, count in master.pubsub_numsub(*channels)] != [2]:
            wrong.append(f"subscriptions on the new master: {master.pubsub_numsub(*channels)}")
    return wrong


async def test_a_primary_killed_under_writes_loses_no_write_and_no_event(sentinel_cluster):
    group, cluster = sentinel_cluster
    keys = cluster.keys
    sockets = {
        "alice": await subscribed(cluster.servers[0].ws, keys["alice"]),
        "bob": await subscribed(cluster.servers[1].ws, keys["bob"]),
    }
    received = {name: [] for name in sockets}
    readers = [asyncio.create_task(collect(ws, received[name])) for name, ws in sockets.items()]
    killed_at = []

    def kill_midway(i: int) -> None:
        if i == KILL_AFTER:
            group.primary.kill()
            killed_at.append(time.monotonic())

    statuses, written = [], []
    writer = threading.Thread(target=write_all, args=(cluster.servers, keys["carol"], kill_midway, statuses, written))
    writer.start()
    await asyncio.to_thread(writer.join)

    # No REST write failed: the publish is off the request thread, and a lost one is in the event log.
    assert statuses == [201] * WRITES
    await all_received(received, WRITES, seconds=20)
    for name, frames in received.items():
        assert [frame["data"]["memory"]["id"] for frame in frames] == written, name  # none lost, none twice
        seqs = [frame["seq"] for frame in frames]
        assert seqs == list(range(seqs[0], seqs[0] + WRITES)), name
    for reader in readers:
        reader.cancel()

    # Counts, presence, caps and pub/sub are right again within the bound, checked from carol's socket.
    deadline, checker = killed_at[0] + RECOVERY_BOUND_SECONDS, None
    while True:
        try:
            checker = checker or await ready(cluster.servers[0].ws, keys["carol"])
            wrong = await recovered(group, cluster, checker)
        except websockets.ConnectionClosed as closed:  # 1013 while Redis cannot be reached: try again
            checker, wrong = None, [f"carol's socket closed {closed.rcvd.code if closed.rcvd else 1006}"]
        if not wrong:
            break
        assert time.monotonic() < deadline, wrong
        await asyncio.sleep(0.5)
    print(f"caps, counts, presence and pub/sub right again {time.monotonic() - killed_at[0]:.1f} s after the kill")
    second = await ready(cluster.servers[1].ws, keys["alice"])  # alice's cap is 2: one more, then no more
    third = await websockets.connect(f"{cluster.servers[0].ws}?token={keys['alice']}")
    assert await close_code(third) == 4029
    for ws in [checker, second, *sockets.values()]:
        await ws.close()


def publishes(server: RedisServer) -> int:
    """PUBLISH commands the Redis has run (INFO commandstats)."""
    with server.client() as client:
        return int(client.info("commandstats").get("cmdstat_publish", {}).get("calls", 0))


@pytest.fixture(scope="module")
def sharded(cluster_factory, tmp_path_factory):
    """Two servers whose channel layer spreads the tenants' groups over two pub/sub Redis shards."""
    directory = tmp_path_factory.mktemp("shards")
    shards = [RedisServer(directory), RedisServer(directory)]
    for shard in shards:
        cluster_factory.defer(shard.stop)
        shard.start()
    cluster = cluster_factory(
        "sharded",
        # Ten tenants: channels-redis' hash puts tenants 8 and 9 of the first ten on the second of two shards.
        users={f"user{i}": (f"tenant{i}", "member") for i in range(10)},
        # Events cross instances by pub/sub only: the event log's look for missed events waits a minute.
        settings={"REDIS_PUBSUB_URLS": ",".join(shard.url for shard in shards), "PUOMEMO_EVENT_LOG_POLL_SECONDS": "60"},
    )
    return cluster, shards


async def test_tenants_on_either_pub_sub_shard_receive_across_instances(sharded):
    cluster, shards = sharded
    show = (
        "import json; from accounts.models import Membership as M; "
        "print(json.dumps({m.user.username: m.tenant_id for m in M.objects.all()}))"
    )
    tenants = json.loads(manage(cluster.env, "shell", "-c", show).strip().splitlines()[-1])
    channel = {name: f"asgi__group__puomemo.tenant.{tenant}" for name, tenant in tenants.items()}
    shard_of = {name: _consistent_hash(channel[name], len(shards)) for name in tenants}
    assert set(shard_of.values()) == {0, 1}  # the tenants land on both shards
    # Each user's socket on one instance, their write through the other: the event crosses by its tenant's shard.
    names = sorted(cluster.keys)
    home = {name: cluster.servers[i % 2] for i, name in enumerate(names)}
    away = {name: cluster.servers[(i + 1) % 2] for i, name in enumerate(names)}
    sockets = {name: await subscribed(home[name].ws, cluster.keys[name]) for name in names}
    before = [publishes(shard) for shard in shards]

    for name, key in cluster.keys.items():
        code, memory = await asyncio.to_thread(api, away[name], "POST", "/api/v4/memories/", key, {"title": name})
        assert code == 201
        frame = await asyncio.wait_for(next_of_type(sockets[name], "memory.created"), 10)
        assert frame["data"]["memory"]["id"] == memory["id"]

    # Each shard carried its own tenants' traffic: the instance holding the tenant's socket subscribed there (and
    # only there), and the other instance published there.
    for index, shard in enumerate(shards):
        mine = [name for name in tenants if shard_of[name] == index]
        with shard.client() as client:
            assert dict(client.pubsub_numsub(*(channel[name] for name in tenants))) == {
                channel[name]: 1 if name in mine else 0 for name in tenants
            }
        assert publishes(shard) - before[index] >= len(mine)
    with cluster.redis.client() as main:  # the main Redis keeps the registry and tickets, and no pub/sub
        assert main.pubsub_channels("asgi__group__*") == []
        assert main.zcard("puomemo:ws:all") == len(sockets)
    for ws in sockets.values():
        await ws.close()
