"""The Python client (clients/python, `puomemo_client`) and its CLI against a real daphne process and Redis."""

import asyncio
import json
import signal
import subprocess
import time
import urllib.request
import uuid
from datetime import datetime

import jwt
import pytest
import websockets
from puomemo_client import (
    PuoMemoClient,
    PuoMemoClosedError,
    backoff_delay,
    jwt_expiry,
    refresh_delay,
)

from tests.support.live import ROOT, Server, api, free_port
from tests.support.pyclient import (
    SECRET,
    USERS,
    cli,
    create_memory,
    event_log,
    login,
    mint,
    next_event,
    read_line,
    record,
    running,
    stop_cli,
    until,
)

LOGGED = ("memory.created", "memory.updated", "memory.deleted", "memory.embedding_complete")


@pytest.fixture(scope="module")
def live(cluster_factory):
    cluster = cluster_factory("clients", users=USERS, settings={"SECRET_KEY": SECRET}, count=1)
    return {"server": cluster.servers[0], "keys": cluster.keys, "env": cluster.env}


def test_backoff_doubles_to_60_s_with_jitter_and_refresh_leads_expiry():
    for attempt in range(12):
        step = min(60, 2**attempt)
        delays = {backoff_delay(attempt) for _ in range(20)}
        assert all(step / 2 <= delay <= step for delay in delays) and len(delays) > 1
    assert (refresh_delay(1800), refresh_delay(5)) == (1740, 4)  # 60 s before, or at 80% for short tokens
    token = jwt.encode({"exp": 2_000_000_000}, SECRET, algorithm="HS256")
    assert (jwt_expiry(token), jwt_expiry("pm_abc"), jwt_expiry("a.b.c")) == (2_000_000_000, None, None)


@pytest.mark.live
async def test_python_client_gets_events_and_resubscribes_after_a_reconnect(live):
    server, keys = live["server"], live["keys"]
    bob = PuoMemoClient(keys["bob"], server.ws)
    events = record(bob, "memory.created", "closed")
    async with running(bob):
        await create_memory(server, keys["alice"], "before")
        assert (await next_event(events, "memory.created"))["memory"]["title"] == "before"
        for _ in range(300):  # past twice the rate limit (100 a minute): the server closes with 4002
            if not await bob.send("ping"):
                break
        closed = await next_event(events, "closed")
        assert (closed["code"], closed["reconnect"]) == (4002, True)
        await bob.wait_connected(10)  # reconnected after backoff
        assert bob.channels == ["memories", "tenant.updates"]
        await create_memory(server, keys["alice"], "after")
        # A new connection has no subscriptions: this arrives only because the client subscribed again.
        assert (await next_event(events, "memory.created"))["memory"]["title"] == "after"


@pytest.mark.live
async def test_subscribe_and_unsubscribe_last_across_reconnects(live):
    server, keys = live["server"], live["keys"]
    bob = PuoMemoClient(keys["bob"], server.ws, channels=["tenant.updates"], backoff_base=0.05)
    heard = record(bob, "memory.created", "closed")
    async with running(bob):
        assert await bob.subscribe(["memories"]) == ["memories", "tenant.updates"]
        await create_memory(server, keys["alice"], "subscribed")
        assert (await next_event(heard, "memory.created"))["memory"]["title"] == "subscribed"
        assert await bob.unsubscribe(["tenant.updates"]) == ["memories"]
        bob.ws.transport.abort()
        await next_event(heard, "closed")
        await bob.wait_connected(10)
        assert bob.channels == ["memories"]  # as the server confirmed it after the reconnect
        await create_memory(server, keys["alice"], "still subscribed")
        assert (await next_event(heard, "memory.created"))["memory"]["title"] == "still subscribed"


@pytest.mark.live
async def test_presence_lists_the_connected_users(live):
    server, keys = live["server"], live["keys"]
    alice, bob = PuoMemoClient(keys["alice"], server.ws), PuoMemoClient(keys["bob"], server.ws)
    heard = record(alice, "presence")
    async with running(alice, bob):
        users = await alice.presence()
        assert {user["user_name"] for user in users} == {"alice", "bob"}
        assert all(user["connections"] >= 1 for user in users)
        assert (await next_event(heard, "presence"))["users"] == users  # on("presence") sees the reply too
    async with running(alice):
        assert {user["user_name"] for user in await alice.presence()} == {"alice"}  # bob left


@pytest.mark.live
async def test_typing_reaches_a_teammate_and_is_throttled_per_memory(live):
    server, keys = live["server"], live["keys"]
    memory = await create_memory(server, keys["alice"], "agenda")
    alice, bob = PuoMemoClient(keys["alice"], server.ws), PuoMemoClient(keys["bob"], server.ws)
    typing = record(bob, "memory.typing")
    async with running(alice, bob):
        assert await alice.typing(memory["id"]) is True
        assert await alice.typing(memory["id"]) is False  # within 2 s: not sent
        data = await next_event(typing, "memory.typing")
        assert (data["memory_id"], data["user_name"]) == (memory["id"], "alice")
        await asyncio.sleep(2.1)
        assert await alice.typing(memory["id"]) is True
        assert (await next_event(typing, "memory.typing"))["memory_id"] == memory["id"]


@pytest.mark.live
async def test_refresh_returns_the_new_tokens_expiry(live):
    server = live["server"]
    first, second = login(server, "alice"), mint(login(server, "alice"), 3600)
    alice = PuoMemoClient(first, server.ws)
    async with running(alice):
        expires_at = await alice.refresh(second)
        assert expires_at.endswith("Z")
        assert datetime.fromisoformat(expires_at).timestamp() == jwt_expiry(second)
        assert alice.token == second
        assert await alice.refresh(live["keys"]["alice"]) is None  # API keys do not expire


@pytest.mark.live
async def test_a_token_provider_renews_a_short_jwt_in_band_before_it_expires(live):
    server, template = live["server"], login(live["server"], "alice")
    issued: list[str] = []

    async def provider() -> str:
        issued.append(mint(template, 5))
        return issued[-1]

    renewing = PuoMemoClient(None, server.ws, token_provider=provider)
    control = PuoMemoClient(mint(template, 5), server.ws)  # the same kind of token, no provider
    renewed_at: list[float] = []
    renewing.on("authenticated", lambda data: renewed_at.append(time.time()))
    closes = record(renewing, "closed")
    async with running(renewing, control) as (_, control_task):
        first_expiry = jwt_expiry(issued[0])
        await asyncio.sleep(first_expiry - time.time() + 2.5)
        with pytest.raises(PuoMemoClosedError) as stopped:
            await asyncio.wait_for(control_task, 1)
        assert stopped.value.code == 4001  # the server closes an expired token's socket
        assert renewed_at and renewed_at[0] < first_expiry
        assert renewing.connected and closes.empty()
        assert len(issued) >= 2 and renewing.token == issued[-1]
        assert {user["user_name"] for user in await renewing.presence()} == {"alice"}


@pytest.mark.live
async def test_a_revoked_key_stops_the_client_without_reconnecting(live):
    server, keys = live["server"], live["keys"]
    status, created = await asyncio.to_thread(api, server, "POST", "/api/v4/api-keys/", keys["bob"], {"name": "d"})
    assert status == 201
    client = PuoMemoClient(created["key"], server.ws)
    closes: list[dict] = []
    client.on("closed", closes.append)
    task = asyncio.create_task(client.connect())
    await client.wait_connected(10)
    status, _ = await asyncio.to_thread(api, server, "DELETE", f"/api/v4/api-keys/{created['id']}/", keys["bob"])
    assert status == 204
    with pytest.raises(PuoMemoClosedError) as stopped:
        await asyncio.wait_for(task, 10)
    assert stopped.value.code == client.close_code == 4001
    assert [(c["code"], c["reconnect"]) for c in closes] == [(4001, False)]
    assert not client.connected


async def test_python_client_sends_its_position_tracks_seq_and_drops_stale_versions():
    """Against a scripted server: what the client sends on each (re)connect, and what it does with seq frames."""
    subscribes: list[dict] = []

    def frame(message_type: str, data: dict, seq: int | None = None) -> str:
        envelope = {"id": str(uuid.uuid4()), "type": message_type, "timestamp": "2026-01-01T00:00:00Z", "data": data}
        return json.dumps(envelope | ({"seq": seq, "epoch": "e1"} if seq is not None else {}))

    def updated(seq: int, version: int) -> str:
        at = "2026-01-01T00:00:00Z"
        memory = {"id": "m1", "title": "t", "content": "", "tags": [], "visibility": "team", "version": version}
        data = {"memory": memory | {"created_at": at, "updated_at": at}, "user_id": "1", "user_name": "alice"}
        return frame("memory.updated", data | {"changes": {"title": "t"}}, seq)

    async def serve(ws) -> None:
        subscribes.append(json.loads(await ws.recv(decode=False))["data"])  # bytes: a client frame, not checked
        await ws.send(frame("subscribed", {"channels": subscribes[-1]["channels"]}))
        if len(subscribes) == 1:
            typing = frame("memory.typing", {"memory_id": "m1", "user_id": "1", "user_name": "alice"})
            for text in (updated(7, 3), updated(8, 2), typing):  # the second is older than the first: dropped
                await ws.send(text)
            await ws.send(frame("resumed", {"last_seq": 9, "epoch": "e1"}))
            await ws.close(1013)  # did not read fast enough: reconnect and resume
        else:
            await ws.send(frame("resync_required", {"reason": "expired", "current_seq": 20, "epoch": "e2"}))
            await ws.wait_closed()

    with pytest.raises(ValueError):
        PuoMemoClient("pm_x", last_seq=-1)
    async with websockets.serve(serve, "127.0.0.1", 0) as scripted:
        port = scripted.sockets[0].getsockname()[1]
        client = PuoMemoClient("pm_x", f"ws://127.0.0.1:{port}/ws", last_seq=5, backoff_base=0.05)
        assert client.last_seq == 5
        versions: list[int] = []
        client.on("memory.updated", lambda data: versions.append(data["memory"]["version"]))
        heard = record(client, "resync_required")
        async with running(client):
            assert (await next_event(heard, "resync_required")) == {
                "reason": "expired",
                "current_seq": 20,
                "epoch": "e2",
            }
            assert (client.last_seq, client.epoch) == (20, "e2")  # the position it goes on from
    # The constructor's position (no epoch known), then max(8, resumed 9) with the epoch of the frames.
    assert [(s.get("last_seq"), s.get("epoch")) for s in subscribes] == [(5, None), (9, "e1")]
    assert versions == [3]  # version 2 after version 3 was dropped


@pytest.mark.live
async def test_python_client_resumes_after_its_connection_is_cut_missing_and_repeating_nothing(live):
    server, keys = live["server"], live["keys"]
    away = asyncio.Event()  # reconnects wait for it: writes happen while bob has no connection

    async def provider() -> str:
        await away.wait()
        return keys["bob"]

    away.set()
    start = (await event_log(server, keys["alice"], 0))["current_seq"]
    bob = PuoMemoClient(keys["bob"], server.ws, token_provider=provider, backoff_base=0.2)
    received: list[tuple[str, dict]] = []
    for event in LOGGED:
        bob.on(event, lambda data, event=event: received.append((event, data)))
    heard = record(bob, "memory.created", "resumed", "closed")
    async with running(bob):
        first = await create_memory(server, keys["alice"], "r-before")
        await next_event(heard, "memory.created")
        away.clear()
        bob.ws.transport.abort()  # the TCP connection just drops: no close frame
        closed = await next_event(heard, "closed")
        assert (closed["code"], closed["reconnect"]) == (1006, True)
        path = f"/api/v4/memories/{first['id']}/"
        assert (await asyncio.to_thread(api, server, "PATCH", path, keys["alice"], {"title": "r-gap"}))[0] == 200
        second = await create_memory(server, keys["alice"], "r-gap-2")
        hidden = await create_memory(server, keys["alice"], "r-gap-private", visibility="private")
        away.set()
        resumed = await next_event(heard, "resumed")
        await create_memory(server, keys["alice"], "r-after")  # live again
        await next_event(heard, "memory.created")
    log = await event_log(server, keys["bob"], start)  # what bob may see, in seq order, each once
    assert received == [(frame["type"], frame["data"]) for frame in log["events"]]
    assert [(name, data["memory"]["title"]) for name, data in received] == [
        ("memory.created", "r-before"),
        ("memory.updated", "r-gap"),
        ("memory.created", "r-gap-2"),
        ("memory.created", "r-after"),
    ]
    assert received[2][1]["memory"]["id"] == second["id"]
    alice_view = (await event_log(server, keys["alice"], start))["events"]
    hidden_seq = next(f["seq"] for f in alice_view if f["data"].get("memory", {}).get("id") == hidden["id"])
    assert resumed["last_seq"] == hidden_seq  # the position moved past an event bob may not see
    assert bob.last_seq == log["current_seq"] == log["events"][-1]["seq"]


@pytest.mark.live
async def test_python_client_with_a_position_ahead_of_the_server_is_told_to_resync(live):
    server, keys = live["server"], live["keys"]
    bob = PuoMemoClient(keys["bob"], server.ws, last_seq=10**9)
    resyncs: list[dict] = []
    bob.on("resync_required", resyncs.append)
    heard = record(bob, "resync_required", "memory.created")
    async with running(bob):
        data = await next_event(heard, "resync_required")
        log = await event_log(server, keys["bob"], 0)
        current = log["current_seq"]
        assert data == {"reason": "ahead", "current_seq": current, "epoch": log["epoch"]} and resyncs == [data]
        assert (bob.last_seq, bob.epoch) == (current, log["epoch"])  # adopted: the next reconnect resumes from there
        await create_memory(server, keys["alice"], "after the resync")
        await next_event(heard, "memory.created")
        assert bob.last_seq == (await event_log(server, keys["bob"], 0))["current_seq"] > current


# --- The package's reconnect rules, and the CLI (python -m puomemo_client) ------------------------------------


class FakeTime:
    """The client's injected time: sleep() returns at once and moves the clock; every wait is recorded."""

    def __init__(self, on_sleep=None) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.on_sleep = on_sleep  # called with the number of waits so far, e.g. to bring a server back

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.waits))
        await asyncio.sleep(0)


def cycle(*values: float):
    """An injected random(): the values, over and over."""
    index = -1

    def rand() -> float:
        nonlocal index
        index += 1
        return values[index % len(values)]

    return rand


@pytest.mark.live
async def test_backoff_waits_double_to_a_60_s_cap_with_jitter_and_reset_after_a_good_connection(live):
    server, keys = live["server"], live["keys"]
    dead = f"ws://127.0.0.1:{free_port()}/ws"  # nothing listens: every attempt is refused

    def on_sleep(count: int) -> None:
        client.url = server.ws if count == 8 else dead  # the ninth attempt reaches the live server

    fake = FakeTime(on_sleep)
    client = PuoMemoClient(
        keys["bob"], dead, keepalive=None, sleep=fake.sleep, clock=fake.clock, rand=cycle(1.0, 0.0, 0.5)
    )
    changes: list[dict] = []
    client.on("state", changes.append)
    task = asyncio.create_task(client.connect())
    try:
        await client.wait_connected(10)
        # 1, 2, 4 … 60 s, each less a jitter of up to half (random() 1.0 → the full step, 0.0 → half of it).
        assert fake.waits == [1, 1, 3, 8, 8, 24, 60, 30]
        assert client.state == "open" and client.attempt == 8
        fake.now += client.stable_after  # the connection lasts: a good one
        client.ws.transport.abort()  # then it drops
        while len(fake.waits) < 11:  # two more attempts, refused
            await asyncio.sleep(0.01)
    finally:
        await client.disconnect()
        await asyncio.wait_for(task, 5)
    # After the good connection the steps start again from 1 s, and grow while the attempts keep failing.
    assert fake.waits[8:11] == [0.75, 2, 2]  # steps 1, 2, 4 with random() 0.5, 1.0, 0.0
    states = [change["state"] for change in changes]
    assert states[:4] == ["connecting", "reconnecting", "connecting", "reconnecting"] and states[-1] == "closed"
    after = changes[states.index("open") + 1]
    assert (after["state"], after["code"], after["delay"], after["attempt"]) == ("reconnecting", 1006, 0.75, 1)
    assert [change["delay"] for change in changes if change["state"] == "reconnecting"][:11] == fake.waits[:11]


async def test_close_codes_stop_back_off_or_reconnect():
    """Against a scripted server that subscribes each connection and then closes it with the next code."""
    codes = [1001, 4002, 4029, 1011, 1012, 1013, 1006, 4008, 1009]
    brief = {4029, 1012, 1013}  # closed at once; the others last `stable_after` of the client's time

    async def serve(ws) -> None:
        code = codes[len(connections)]
        connections.append(code)
        channels = json.loads(await ws.recv(decode=False))["data"]["channels"]
        if code != 4029:  # too many connections: closed before it subscribes
            frame = {"id": str(uuid.uuid4()), "type": "subscribed", "timestamp": "2026-01-01T00:00:00Z"}
            await ws.send(json.dumps(frame | {"data": {"channels": channels}}))
        await asyncio.sleep(0.05)  # `subscribed` on its way first
        if code not in brief:
            fake.now += 5
        if code == 1006:
            ws.transport.abort()
        else:
            await ws.close(code)

    connections: list[int] = []
    fake = FakeTime()
    async with websockets.serve(serve, "127.0.0.1", 0) as scripted:
        port = scripted.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/ws"
        client = PuoMemoClient("pm_x", url, keepalive=None, sleep=fake.sleep, clock=fake.clock, rand=cycle(1.0))
        closes: list[dict] = []
        retries: list[dict] = []
        client.on("closed", closes.append)
        client.on("state", lambda change: retries.append(change) if change["state"] == "reconnecting" else None)
        with pytest.raises(PuoMemoClosedError) as stopped:
            await asyncio.wait_for(client.connect(), 10)
    assert stopped.value.code == client.close_code == 1009 and client.state == "closed"
    assert [(c["code"], c["reconnect"]) for c in closes] == [(code, code != 1009) for code in codes]
    assert [(r["code"], r["delay"]) for r in retries] == [
        (1001, 1),  # a good connection: the first step
        (4002, 2),  # the server asked to slow down: the delay grows although the connection was good
        (4029, 4),
        (1011, 1),  # good again: reset
        (1012, 1.0),  # a restart: at once, after a random wait of up to restart_jitter (1 s), whatever the backoff
        (1013, 4),  # too brief to count as good: the delay grows
        (1006, 1),
        (4008, 1),
    ]  # and 1009 stops: resending the same thing would fail again
    assert fake.waits == [1, 2, 4, 1, 1.0, 4, 1, 1]

    async def invalid_format(ws) -> None:
        await ws.recv(decode=False)
        await ws.close(4003)

    async with websockets.serve(invalid_format, "127.0.0.1", 0) as scripted:
        port = scripted.sockets[0].getsockname()[1]
        client = PuoMemoClient("pm_x", f"ws://127.0.0.1:{port}/ws", keepalive=None, sleep=fake.sleep)
        with pytest.raises(PuoMemoClosedError) as stopped:
            await asyncio.wait_for(client.connect(), 10)
    assert stopped.value.code == 4003 and len(fake.waits) == 8  # no wait: it stopped at once


async def test_the_heartbeat_pings_a_quiet_connection_and_drops_it_when_no_pong_comes():
    """A scripted server that subscribes and then answers nothing: a dead link the TCP connection hides."""
    received: list[list[str]] = []

    async def serve(ws) -> None:
        types: list[str] = []
        received.append(types)
        while True:
            frame = json.loads(await ws.recv(decode=False))  # bytes: a client frame, not checked
            types.append(frame["type"])
            if frame["type"] == "subscribe":
                data = {"channels": frame["data"]["channels"]}
                reply = {"id": str(uuid.uuid4()), "type": "subscribed", "timestamp": "2026-01-01T00:00:00Z"}
                await ws.send(json.dumps(reply | {"data": data}))

    async with websockets.serve(serve, "127.0.0.1", 0) as scripted:
        port = scripted.sockets[0].getsockname()[1]
        client = PuoMemoClient("pm_x", f"ws://127.0.0.1:{port}/ws", keepalive=0.3, reply_timeout=0.5)
        client.backoff_base = 0.05
        heard = record(client, "closed")
        async with running(client):
            closed = await next_event(heard, "closed", timeout=5)
            await client.wait_connected(5)
    assert (closed["code"], closed["reconnect"]) == (1006, True)
    assert received[0] == ["subscribe", "ping"] and received[1][0] == "subscribe"


async def next_printed(stdout: asyncio.StreamReader, message_type: str) -> dict:
    while (frame := json.loads(await read_line(stdout)))["type"] != message_type:
        pass
    return frame


@pytest.mark.live
async def test_the_cli_prints_created_updated_and_deleted_memories_as_json_lines(live, tmp_path):
    server, keys = live["server"], live["keys"]
    tail = await cli("--url", server.ws, "--channels", "memories", token=keys["bob"], cwd=tmp_path)
    try:
        assert "subscribed to memories" in await until(tail.stderr, "connected")
        memory = await create_memory(server, keys["alice"], "from the CLI test")
        created = json.loads(await read_line(tail.stdout))
        assert set(created) == {"id", "type", "timestamp", "data", "seq", "epoch"}
        assert (created["type"], created["data"]["memory"]["id"]) == ("memory.created", memory["id"])
        path = f"/api/v4/memories/{memory['id']}/"
        assert (await asyncio.to_thread(api, server, "PATCH", path, keys["alice"], {"title": "renamed"}))[0] == 200
        updated = json.loads(await read_line(tail.stdout))
        assert (updated["type"], updated["data"]["changes"]["title"]) == ("memory.updated", "renamed")
        assert (await asyncio.to_thread(api, server, "DELETE", path, keys["alice"]))[0] == 204
        deleted = json.loads(await read_line(tail.stdout))
        assert (deleted["type"], deleted["data"]["memory_id"]) == ("memory.deleted", memory["id"])
        assert created["seq"] < updated["seq"] < deleted["seq"]
    finally:
        stdout, stderr = await stop_cli(tail, signal.SIGINT)  # Ctrl-C
    assert tail.returncode == 0 and stdout == b""
    assert keys["bob"] not in stderr.decode()


@pytest.mark.live
async def test_the_cli_exits_with_3_when_the_server_refuses_the_token(live, tmp_path):
    server = live["server"]
    tail = await cli("--url", server.ws, token="pm_not-a-key", cwd=tmp_path)
    stdout, stderr = await asyncio.wait_for(tail.communicate(), 15)
    assert tail.returncode == 3 and stdout == b""
    assert "close code 4001, the server refused the token" in stderr.decode()
    assert "pm_not-a-key" not in stderr.decode()
    missing = await cli("--url", server.ws, token=None, cwd=tmp_path)
    stdout, stderr = await asyncio.wait_for(missing.communicate(), 15)
    assert missing.returncode == 2 and b"PUOMEMO_TOKEN" in stderr and stdout == b""


async def test_the_cli_exits_with_4_on_4003_and_5_on_1009(tmp_path):
    """Against a scripted server that closes with the code in its path, after the client's subscribe."""

    async def serve(ws) -> None:
        await ws.recv(decode=False)
        await ws.close(int(ws.request.path.split("?")[0].rsplit("/", 1)[1]), "scripted")

    async with websockets.serve(serve, "127.0.0.1", 0) as scripted:
        port = scripted.sockets[0].getsockname()[1]
        for code, status in ((4003, 4), (1009, 5)):
            tail = await cli("--url", f"ws://127.0.0.1:{port}/{code}", token="pm_x", cwd=tmp_path)
            stdout, stderr = await asyncio.wait_for(tail.communicate(), 15)
            assert (tail.returncode, stdout) == (status, b"")
            assert f"stopped: close code {code}" in stderr.decode() and "scripted" in stderr.decode()


def start_again(server: Server, env: dict) -> None:
    """Start the server's stopped daphne process again: the same command, so on the same port."""
    server.process = subprocess.Popen(
        server.process.args,
        cwd=ROOT,
        env=env,
        stdout=server.log.open("a"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        assert server.process.poll() is None, server.log.read_text()
        try:
            urllib.request.urlopen(f"{server.http}/api/v4/schema/", timeout=1)
            return
        except OSError:
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.2)


@pytest.mark.live
async def test_the_client_and_the_cli_reconnect_after_a_server_restart(live, tmp_path):
    server, keys = live["server"], live["keys"]
    bob = PuoMemoClient(keys["bob"], server.ws, backoff_base=0.2, backoff_cap=1)
    states: list[str] = []
    bob.on("state", lambda change: states.append(change["state"]))
    heard = record(bob, "memory.created", "closed")
    tail = await cli("--url", server.ws, token=keys["bob"], cwd=tmp_path)
    try:
        async with running(bob):
            await until(tail.stderr, "connected")
            await create_memory(server, keys["alice"], "before the restart")
            printed = await next_printed(tail.stdout, "memory.created")
            assert printed["data"]["memory"]["title"] == "before the restart"
            await next_event(heard, "memory.created")
            await asyncio.to_thread(server.stop)  # SIGTERM: daphne closes its sockets and exits
            closed = await next_event(heard, "closed")
            assert closed["reconnect"] is True and closed["code"] in (1012, 1006)  # a restart, or a drop
            assert "reconnecting in" in await until(tail.stderr, "connection closed")
            await asyncio.sleep(1.5)  # attempts meet a closed port
            assert bob.state == "reconnecting" and not bob.connected
            await asyncio.to_thread(start_again, server, live["env"])
            await bob.wait_connected(15)
            await until(tail.stderr, "connected")
            memory = await create_memory(server, keys["alice"], "after the restart")
            assert (await next_event(heard, "memory.created"))["memory"]["id"] == memory["id"]
            assert (await next_printed(tail.stdout, "memory.created"))["data"]["memory"]["id"] == memory["id"]
    finally:
        _, stderr = await stop_cli(tail, signal.SIGTERM)
    assert tail.returncode == 0, stderr.decode()
    # (A reconnect may still reach the stopping server before its port closes: open, reconnecting again.)
    assert states[:3] == ["connecting", "open", "reconnecting"] and states[-2:] == ["open", "closed"]
    assert "connecting" in states[3:-2]
