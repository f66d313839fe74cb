"""No missed events, against real daphne processes: a forced disconnect mid-burst, resumed; the embedded default."""

import asyncio
import json
import random
import socket
import threading
from collections import Counter

import pytest
import websockets

from tests.support.live import api, long_log, manage

pytestmark = pytest.mark.live

WRITES = 1000
WRITERS = {"alice": "admin", "bob": "member", "dan": "member", "erin": "admin"}
VISIBLE_TO = {  # who each viewer may see: the writers' roles are fixed, and nobody changes visibility here
    "carol": lambda owner, visibility: visibility == "public",
    "fay": lambda owner, visibility: visibility != "private",
}


@pytest.fixture(scope="module")
def live(cluster_factory):
    users = {name: ("live", role) for name, role in WRITERS.items()}
    users.update({"carol": ("live", "guest"), "fay": ("live", "member")})
    # A resume of 3,000 events below: past the default bound, which would answer resync_required.
    return cluster_factory("eventlog", users=users, settings={"PUOMEMO_WS_RESUME_MAX_EVENTS": "5000"})


def burst(servers, keys: dict[str, str], writes: dict) -> None:
    """WRITES creates and updates over REST from several writers, spread over the servers."""

    def writer(name: str, count: int, seed: int) -> None:
        rng = random.Random(seed)
        mine = []
        for i in range(count):
            server = servers[i % len(servers)]
            if mine and rng.random() < 0.3:
                memory_id, visibility = rng.choice(mine)
                status, _ = api(server, "PATCH", f"/api/v4/memories/{memory_id}/", keys[name], {"title": f"{i}"})
                assert status == 200
                writes[memory_id].append("memory.updated")
            else:
                visibility = rng.choice(["private", "team", "public"])
                body = {"title": f"{name} {i}", "visibility": visibility}
                status, created = api(server, "POST", "/api/v4/memories/", keys[name], body)
                assert status == 201
                mine.append((created["id"], visibility))
                writes[created["id"]] = [name, visibility, "memory.created"]

    threads = [
        threading.Thread(target=writer, args=(name, WRITES // len(WRITERS), seed)) for seed, name in enumerate(WRITERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


async def listen(url: str, key: str, received: list, *, last_seq: int | None, stop: asyncio.Event, cut_after: int):
    """Receive memory events; resume from last_seq if given; drop the TCP connection after cut_after events."""
    async with websockets.connect(f"{url}?token={key}", max_size=None) as ws:
        subscribe = {"channels": ["memories"]}
        if last_seq is not None:
            subscribe["last_seq"] = last_seq
        await ws.send(json.dumps({"type": "subscribe", "data": subscribe}))
        got = 0
        while not stop.is_set():
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 1))
            except TimeoutError:
                continue
            if frame["type"].startswith("memory."):
                received.append(frame)
                got += 1
                if got == cut_after:
                    ws.transport.abort()  # a forced disconnect: no close handshake
                    return


@pytest.mark.parametrize("across", [False, True], ids=["one instance", "two instances"])
async def test_a_forced_disconnect_mid_burst_loses_and_doubles_nothing(live, across):
    a, b = live.servers
    keys = live.keys
    status, start = await asyncio.to_thread(api, a, "GET", "/api/v4/events?after_seq=0&limit=1", keys["alice"])
    assert status == 200
    first_seq = start["current_seq"]
    writes: dict = {}
    stop = asyncio.Event()
    received = {viewer: [] for viewer in VISIBLE_TO}

    async def viewer(name: str) -> None:
        await listen(a.ws, keys[name], received[name], last_seq=first_seq, stop=stop, cut_after=150)
        await asyncio.sleep(0.5)  # away while the writers go on
        last = received[name][-1]["seq"]
        await listen((b if across else a).ws, keys[name], received[name], last_seq=last, stop=stop, cut_after=0)

    listeners = [asyncio.create_task(viewer(name)) for name in VISIBLE_TO]
    await asyncio.sleep(0.5)
    await asyncio.to_thread(burst, [a, b], keys, writes)
    await asyncio.sleep(3)  # the tail of the burst, then quiet
    stop.set()
    await asyncio.gather(*listeners)

    for name, may_see in VISIBLE_TO.items():
        frames = received[name]
        seqs = [f["seq"] for f in frames]
        assert seqs == sorted(set(seqs)), f"{name}: out of order or doubled"
        expected = Counter()
        for memory_id, (owner, visibility, *types) in writes.items():
            if may_see(owner, visibility):
                expected.update((memory_id, t) for t in types)
        got = Counter((f["data"]["memory"]["id"], f["type"]) for f in frames)
        assert got == expected, (
            f"{name}: {sum((expected - got).values())} missed, {sum((got - expected).values())} extra"
        )


def test_the_embedded_default_delivers_a_shell_write(cluster_factory):
    """No Redis: a write made by `manage.py shell` reaches a client of the server process through the log."""
    cluster = cluster_factory("embedded-default", count=1, redis=False)
    env, server = cluster.env, cluster.servers[0]
    manage(env, "create_tenant", "solo")
    manage(env, "create_user", "sam", "--tenant", "solo", "--role", "member", "--password", "pw-live-123")
    key = manage(env, "create_api_key", "sam").strip().splitlines()[-1]

    async def scenario() -> dict:
        async with websockets.connect(f"{server.ws}?token={key}") as ws:
            await ws.send(json.dumps({"type": "subscribe", "data": {"channels": ["memories"]}}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            code = (
                "from django.contrib.auth.models import User; from memories.models import Memory; "
                "u = User.objects.get(username='sam'); "
                "Memory.objects.create(owner=u, tenant=u.membership.tenant, title='from a shell')"
            )
            await asyncio.to_thread(manage, env, "shell", "-c", code)
            return json.loads(await asyncio.wait_for(ws.recv(), 5))

    frame = asyncio.run(scenario())
    assert (frame["type"], frame["data"]["memory"]["title"], frame["seq"]) == ("memory.created", "from a shell", 1)


def test_a_long_resume_arrives_whole_at_the_pace_the_client_reads(live):
    """3,000 events of 10 KB (30 MB): more than the outbox holds and than a socket buffer may keep unsent."""
    a = live.servers[0]
    first = long_log(live.env, "alice", events=3000, content_bytes=10_000)

    async def resume() -> tuple[int, dict]:
        # A client that reads, slowly: a small receive buffer, and a little work per frame.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
        sock.connect(("127.0.0.1", a.port))
        uri = f"{a.ws}?token={live.keys['carol']}"
        async with websockets.connect(uri, sock=sock, max_size=None, max_queue=1) as ws:
            await ws.send(json.dumps({"type": "resume", "data": {"last_seq": first - 1}}))
            count = 0
            while (frame := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "resumed":
                assert frame["seq"] == first + count
                epochs.add(frame["epoch"])
                count += 1
                await asyncio.sleep(0.002)
            return count, frame["data"]

    epochs = set()
    count, resumed = asyncio.run(resume())
    assert len(epochs) == 1  # one stream, numbered in one epoch
    assert (count, resumed) == (3000, {"last_seq": first + 2999, "epoch": epochs.pop()})
