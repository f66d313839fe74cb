"""Against real daphne processes sharing real Redis: close codes, limits across processes, cross-instance events."""

import asyncio
import contextlib
import json
import signal
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import websockets

from clients.python.puomemo_ws import PuoMemoWebSocket
from tests.support.live import (
    api,
    close_code,
    manage,
    masked_text_frame,
    next_of_type,
    raw_websocket,
    ready,
    rss_bytes,
    subscribed,
)

pytestmark = pytest.mark.live

MAX_BYTES = 1_048_576  # the production default, so daphne's own 1 MiB cap is exercised too


@pytest.fixture(scope="module")
def cluster(cluster_factory):
    """Two server processes (A and B) on one database and one Redis, with a tenant of three roles."""
    users = {"alice": ("live", "admin"), "bob": ("live", "member"), "carol": ("live", "guest")}
    users["dave"] = ("elsewhere", "admin")
    settings = {
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_USER": "2",
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT": "4",
        "PUOMEMO_WS_RATE_LIMIT_PER_MINUTE": "20",
        "PUOMEMO_WS_IDLE_TIMEOUT_SECONDS": "3",
        "PUOMEMO_WS_MAX_MESSAGE_BYTES": str(MAX_BYTES),
    }
    # With the embeddings worker: memory.embedding_complete is tested here.
    live = cluster_factory("live", users=users, settings=settings, args=())
    a, b = live.servers
    return {"a": a, "b": b, "keys": live.keys, "env": live.env, "tmp": live.tmp, "cluster": live}


async def test_bad_token_gets_4001_not_http_403(cluster):
    async with websockets.connect(f"{cluster['a'].ws}?token=pm_wrong") as ws:
        assert await close_code(ws) == 4001


async def test_message_size_limit_at_exactly_the_limit_and_one_byte_over(cluster):
    async with websockets.connect(f"{cluster['a'].ws}?token={cluster['keys']['bob']}", max_size=None) as ws:
        exact = json.dumps({"type": "ping", "data": ""})
        exact = exact[:-2] + "x" * (MAX_BYTES - len(exact)) + '"}'
        assert len(exact.encode()) == MAX_BYTES
        await ws.send(exact)
        assert json.loads(await ws.recv())["type"] == "pong"
        await ws.send(exact[:-2] + 'xx"}')
        assert await close_code(ws) == 1009


async def test_rate_limit_closes_with_4002(cluster):
    async with websockets.connect(f"{cluster['a'].ws}?token={cluster['keys']['bob']}") as ws:
        replies = []
        for _ in range(40):
            await ws.send('{"type": "ping"}')
            replies.append(json.loads(await ws.recv())["type"])
        assert replies == ["pong"] * 20 + ["error"] * 20
        await ws.send('{"type": "ping"}')
        assert await close_code(ws) == 4002


async def test_invalid_frames_close_with_4003(cluster):
    async with websockets.connect(f"{cluster['a'].ws}?token={cluster['keys']['bob']}") as ws:
        for _ in range(4):
            await ws.send("{nope")
            assert json.loads(await ws.recv())["data"]["message"] == "Invalid message format"
        await ws.send(b"\x01\x02")
        assert await close_code(ws) == 4003


async def test_idle_timeout_closes_with_4008(cluster):
    async with websockets.connect(f"{cluster['b'].ws}?token={cluster['keys']['bob']}") as ws:
        assert await close_code(ws) == 4008


async def test_connection_caps_hold_across_two_processes(cluster):
    a, b, keys = cluster["a"], cluster["b"], cluster["keys"]
    first = await ready(a.ws, keys["bob"])
    second = await ready(b.ws, keys["bob"])
    third = await websockets.connect(f"{a.ws}?token={keys['bob']}")
    assert await close_code(third) == 4029  # the user's cap of 2, counted over A and B
    carol = await ready(b.ws, keys["carol"])
    alice = await ready(a.ws, keys["alice"])
    status, body = await asyncio.to_thread(api, b, "GET", "/api/v4/ws/status", keys["bob"])
    assert (status, body["user_connections"], body["tenant_connections"]) == (200, 2, 4)
    over = await websockets.connect(f"{b.ws}?token={keys['alice']}")
    assert await close_code(over) == 4029  # the tenant's cap of 4
    others = await ready(b.ws, keys["dave"])  # other tenants are unaffected
    for ws in (first, second, carol, alice, others):
        await ws.close()


async def test_a_rest_write_on_a_reaches_clients_on_b_by_visibility(cluster):
    a, b, keys = cluster["a"], cluster["b"], cluster["keys"]
    bob_on_b = await subscribed(b.ws, keys["bob"])
    carol_on_b = await subscribed(b.ws, keys["carol"])
    dave_on_b = await subscribed(b.ws, keys["dave"])
    status, team = await asyncio.to_thread(api, a, "POST", "/api/v4/memories/", keys["alice"], {"title": "Team only"})
    assert status == 201
    status, public = await asyncio.to_thread(
        api, a, "POST", "/api/v4/memories/", keys["alice"], {"title": "Everyone", "visibility": "public"}
    )
    assert status == 201
    assert (await next_of_type(bob_on_b, "memory.created"))["data"]["memory"]["id"] == team["id"]
    assert (await next_of_type(bob_on_b, "memory.created"))["data"]["memory"]["id"] == public["id"]
    # The guest's first event is the public one: the team memory never reached it.
    assert (await next_of_type(carol_on_b, "memory.created"))["data"]["memory"]["id"] == public["id"]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(dave_on_b.recv(), 0.5)
    for ws in (bob_on_b, carol_on_b, dave_on_b):
        await ws.close()


async def test_a_management_command_write_reaches_clients(cluster):
    bob = await subscribed(cluster["a"].ws, cluster["keys"]["bob"])
    # Writes memories in another process; next_of_type pings meanwhile, so the 3 s idle timeout cannot strike.
    demo = asyncio.create_task(asyncio.to_thread(manage, cluster["env"], "demo"))
    event = await next_of_type(bob, "memory.created")
    assert event["data"]["user_name"] in {"alice", "bob"}
    await demo
    await bob.close()


async def test_the_spec_python_client_receives_memory_created(cluster):
    a, keys = cluster["a"], cluster["keys"]
    client = PuoMemoWebSocket(token=keys["bob"], url=a.ws)
    received = asyncio.get_running_loop().create_future()
    client.on("memory.created", lambda data: received.done() or received.set_result(data))
    runner = asyncio.create_task(client.connect())
    for _ in range(50):  # wait until the client is connected and subscribed
        if client.ws is not None:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    await asyncio.to_thread(api, a, "POST", "/api/v4/memories/", keys["alice"], {"title": "For the spec client"})
    data = await asyncio.wait_for(received, 10)
    assert data["memory"]["title"] == "For the spec client"
    await client.disconnect()
    await asyncio.wait_for(runner, 5)


async def test_browser_origin_is_checked(cluster):
    url = f"{cluster['a'].ws}?token={cluster['keys']['bob']}"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    async with websockets.connect(url, origin="http://localhost:8000") as ws:
        await ws.send('{"type": "ping"}')
        assert json.loads(await ws.recv())["type"] == "pong"


def test_tokens_never_reach_the_logs(cluster):
    jwt_status, tokens = api(
        cluster["a"], "POST", "/api/v4/auth/token/", "", {"username": "bob", "password": "pw-live-123"}
    )
    assert jwt_status == 200

    async def use_everywhere():
        async with websockets.connect(f"{cluster['a'].ws}?token={tokens['access']}") as ws:
            await ws.send('{"type": "ping"}')
            assert json.loads(await ws.recv())["type"] == "pong"
        async with websockets.connect(f"{cluster['a'].ws}?token=pm_not-a-real-key-but-secret") as ws:
            assert await close_code(ws) == 4001  # the error path logs nothing of the token either

    asyncio.run(use_everywhere())
    api(cluster["a"], "GET", "/api/v4/memories/", tokens["access"])
    # In the query string of plain HTTP requests too: a /ws request that was not upgraded, a token as a parameter.
    in_queries = ["wst_not-a-real-ticket", "pm_query-secret"]
    for path in (f"/ws?token={tokens['access']}", f"/ws/?ticket={in_queries[0]}", f"/api/v4/?q={in_queries[1]}"):
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(f"{cluster['a'].http}{path}", timeout=10)
    logs = "".join(server.log.read_text() for server in (cluster["a"], cluster["b"]))
    assert "WSCONNECT /ws" in logs and '"GET /ws/" 404' in logs  # the access log is on, and it is what we read
    for secret in [*cluster["keys"].values(), tokens["access"], "pm_not-a-real-key-but-secret", *in_queries]:
        assert secret not in logs


async def test_sigterm_closes_connections_with_1012_service_restart(cluster):
    server = await asyncio.to_thread(cluster["cluster"].start_server, "server-c", ())
    ws = await ready(server.ws, cluster["keys"]["bob"])
    # SIGTERM, as a rolling restart sends; twice, as `make run` stopped with its process group passes it on.
    server.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    assert await close_code(ws) == 1012
    assert await asyncio.to_thread(server.process.wait, 30) == 0
    assert "Traceback" not in server.log.read_text()


def test_sigterm_refuses_new_connections_and_answers_the_requests_already_there(cluster):
    """What a proxy in front meets during a rolling restart: nothing it has sent is cut off."""
    server, key = cluster["cluster"].start_server("server-d", ()), cluster["keys"]["alice"]
    body = json.dumps({"title": "sent across a SIGTERM"}).encode()
    head = (
        f"POST /api/v4/memories/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    in_flight = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    in_flight.sendall(head + body[:5])  # a request the proxy is still sending
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    idle.sendall(b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert idle.recv(65536).startswith(b"HTTP/1.1 200")  # and keeps the connection for the next request

    server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while True:  # the port is closed at once: a proxy sends new requests elsewhere
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        except ConnectionRefusedError:
            break
        assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
        time.sleep(0.05)
    time.sleep(1.5)  # past the WebSockets' 1012 and their flush
    in_flight.sendall(body[5:])
    answer = in_flight.recv(65536)
    assert answer.startswith(b"HTTP/1.1 201") and b"connection: close" in answer.lower(), answer[:300]
    idle.sendall(b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # a proxy reusing its idle connection
    answer = idle.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" in answer.lower(), answer[:300]
    assert server.process.wait(30) == 0
    in_flight.close()
    idle.close()


async def test_oversize_messages_leave_no_memory_behind(cluster):
    server, key = cluster["a"], cluster["keys"]["bob"]
    oversize = "x" * (MAX_BYTES + 1)

    async def reject_one():
        async with websockets.connect(f"{server.ws}?token={key}", max_size=None) as ws:
            await ws.send(oversize)
            assert await close_code(ws) == 1009

    await reject_one()  # warm up the allocator
    baseline = rss_bytes(server.process.pid)
    for _ in range(10):
        await reject_one()
    grown = rss_bytes(server.process.pid) - baseline
    assert grown < 5 * MAX_BYTES, f"RSS grew by {grown / MAX_BYTES:.1f} MiB over 10 rejected 1 MiB messages"


async def test_embedding_complete_follows_a_rest_create_across_instances(cluster):
    a, b, keys = cluster["a"], cluster["b"], cluster["keys"]
    bob_on_b = await subscribed(b.ws, keys["bob"])
    status, memory = await asyncio.to_thread(
        api, a, "POST", "/api/v4/memories/", keys["alice"], {"title": "Embed me", "content": "a sentence"}
    )
    assert (status, memory["embedding_status"]) == (201, "pending")

    async def completion_of(memory_id: str) -> dict:  # earlier tests' memories may complete first
        while (done := await next_of_type(bob_on_b, "memory.embedding_complete"))["data"]["memory_id"] != memory_id:
            pass
        return done

    done = await asyncio.wait_for(completion_of(memory["id"]), 60)
    assert done["data"] == {"memory_id": memory["id"], "embedding_model": "all-MiniLM-L6-v2"}
    status, fresh = await asyncio.to_thread(api, a, "GET", f"/api/v4/memories/{memory['id']}/", keys["alice"])
    assert fresh["embedding_status"] == "ready"
    await bob_on_b.close()


def test_heartbeat_pings_and_drops_a_dead_peer(cluster):
    env = {**cluster["env"], "PUOMEMO_WS_HEARTBEAT_SECONDS": "1", "PUOMEMO_WS_IDLE_TIMEOUT_SECONDS": "60"}
    server = cluster["cluster"].start_server("server-heartbeat", (), env)
    try:
        # A peer that completes the handshake and then never answers anything, like a vanished laptop.
        sock, frames = raw_websocket(server.port, cluster["keys"]["carol"])
        started = time.monotonic()
        try:
            while chunk := sock.recv(4096):
                frames += chunk
        except ConnectionResetError:
            pass  # dropped: what a dead peer gets
        sock.close()
        assert frames[:1] == b"\x89", "the first frame should be the server's WebSocket ping"
        assert time.monotonic() - started < 10, "the dead peer was not dropped"
        _, body = api(server, "GET", "/api/v4/ws/status", cluster["keys"]["carol"])
        assert body["user_connections"] == 0
    finally:
        server.stop()


async def test_a_client_that_stops_reading_is_dropped_and_others_keep_up(cluster):
    env = {
        **cluster["env"],
        "PUOMEMO_WS_MAX_BUFFERED_BYTES": str(1_048_576),
        "PUOMEMO_WS_IDLE_TIMEOUT_SECONDS": "120",
        "PUOMEMO_WS_HEARTBEAT_SECONDS": "120",
    }
    server = await asyncio.to_thread(cluster["cluster"].start_server, "server-slow", (), env)
    keys = cluster["keys"]
    try:
        stalled, _ = raw_websocket(server.port, keys["carol"], receive_buffer=4096)
        stalled.sendall(masked_text_frame('{"type":"subscribe","data":{"channels":["memories"]}}'))
        reader = await subscribed(server.ws, keys["bob"])
        seen: list[str] = []

        async def keep_reading():
            while True:
                seen.append((await next_of_type(reader, "memory.created"))["data"]["memory"]["id"])

        reading = asyncio.create_task(keep_reading())
        big = "x" * 90_000
        created = []
        for i in range(120):  # about 11 MB of events that the stalled client never reads
            status, memory = await asyncio.to_thread(
                api, server, "POST", "/api/v4/memories/", keys["alice"],
                {"title": f"big {i}", "content": big, "visibility": "public"},
            )  # fmt: skip
            assert status == 201
            created.append(memory["id"])
        for _ in range(100):
            if len(seen) == len(created):
                break
            await asyncio.sleep(0.1)
        reading.cancel()
        assert seen == created  # the reading client got every event, in order
        for _ in range(100):
            _, body = await asyncio.to_thread(api, server, "GET", "/api/v4/ws/status", keys["carol"])
            if body["user_connections"] == 0:
                break
            await asyncio.sleep(0.1)
        assert body["user_connections"] == 0, "the stalled client is still connected"
        assert "stopped reading" in server.log.read_text()
        stalled.close()
        await reader.close()
    finally:
        await asyncio.to_thread(server.stop)


def test_failed_logins_on_one_process_lock_the_username_on_the_other(cluster):
    def login(server, password: str) -> tuple[int, dict]:
        return api(server, "POST", "/api/v4/auth/token/", "", {"username": "carol", "password": password})

    try:
        # 20 guesses at once, on both processes: each is counted before its password is checked, so no more
        # than PUOMEMO_LOGIN_FAILURES_PER_USER (5) get that far.
        servers = [cluster["a"], cluster["b"]] * 10
        with ThreadPoolExecutor(20) as pool:
            statuses = [status for status, _ in pool.map(lambda server: login(server, "wrong-guess-123"), servers)]
        assert 1 <= statuses.count(401) <= 5 and statuses.count(429) == 20 - statuses.count(401), statuses
        status, body = login(cluster["b"], "pw-live-123")
        assert status == 429 and "Request was throttled" in body["detail"]
    finally:
        lift = "from accounts.models import LoginFailure; LoginFailure.objects.all().delete()"
        manage(cluster["env"], "shell", "-c", lift)
    assert login(cluster["b"], "pw-live-123")[0] == 200
    logs = "".join(server.log.read_text() for server in (cluster["a"], cluster["b"]))
    assert "wrong-guess-123" not in logs and "pw-live-123" not in logs
