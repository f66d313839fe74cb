"""Against a real daphne process: 1009 for oversize frames, one budget for stalled readers, a deadline for headers."""

import asyncio
import json
import socket
import struct
import time

import pytest
import websockets

from tests.support.live import (
    api,
    close_code,
    peak_rss,
    peak_rss_reset,
    raw_websocket,
    rss_bytes,
    settled_rss,
    subscribed,
)

pytestmark = pytest.mark.live

MIB = 1_048_576
MAX_BYTES = MIB  # PUOMEMO_WS_MAX_MESSAGE_BYTES
DAPHNE_MAX = MAX_BYTES + 64 * 1024  # what serve gives daphne (DAPHNE_HEADROOM_BYTES)
MAX_BUFFERED = MIB  # PUOMEMO_WS_MAX_BUFFERED_BYTES
BUFFERED_BUDGET = 16 * MIB  # PUOMEMO_WS_MAX_BUFFERED_BYTES_TOTAL
HEADER_TIMEOUT = 2  # PUOMEMO_HTTP_HEADER_TIMEOUT_SECONDS
# What the stalled-readers test's server may grow by besides the budget: 60 REST writes of 90 KB
# (~9 MiB with no WebSocket client at all) and the fan-out's copies. Measured (2 cores, SQLite):
# peaks 34-47 MiB over a baseline of 530-565 MiB; without the budget, 220-260 MiB.
RSS_MARGIN = 64 * MIB


@pytest.fixture(scope="module")
def live(cluster_factory):
    """One server (no embeddings worker) with small buffer budgets, a 2 s header timeout and room for 250 sockets."""
    settings = {
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_USER": "250",
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT": "250",
        "PUOMEMO_WS_MAX_MESSAGE_BYTES": str(MAX_BYTES),
        "PUOMEMO_WS_IDLE_TIMEOUT_SECONDS": "120",
        "PUOMEMO_WS_HEARTBEAT_SECONDS": "120",
        "PUOMEMO_WS_MAX_BUFFERED_BYTES": str(MAX_BUFFERED),
        "PUOMEMO_WS_MAX_BUFFERED_BYTES_TOTAL": str(BUFFERED_BUDGET),
        "PUOMEMO_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
    }
    users = {"alice": ("live", "admin"), "bob": ("live", "member"), "carol": ("live", "guest")}
    cluster = cluster_factory("live-daphne", users=users, settings=settings, count=1)
    server = cluster.servers[0]
    settled_rss(server.process.pid)  # so that no test measures the model loading
    return {"server": server, "keys": cluster.keys}


# --- 1009 for every oversize message ---------------------------------------------


def frame_header(length: int, opcode: int = 0x1) -> bytes:
    """A final, masked client frame's header (mask of zeros, so the payload goes as it is)."""
    if length < 126:
        return bytes([0x80 | opcode, 0x80 | length]) + bytes(4)
    if length < 65536:
        return bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", length) + bytes(4)
    return bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", length) + bytes(4)


def read_close_code(sock: socket.socket, received: bytes = b"") -> int:
    """Read the server's first frame, which must be a close frame, and return its code (1006: no frame)."""
    while len(received) < 4:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return 1006
        if not chunk:
            return 1006
        received += chunk
    assert received[0] == 0x88, f"not a close frame: {received[:16]!r}"
    return struct.unpack("!H", received[2:4])[0]


async def sent_and_refused(ws, text: str) -> int:
    """Send a message; return the close code the server answers with."""
    try:
        await ws.send(text)
    except websockets.ConnectionClosed as closed:  # it may close while the message is still on its way
        return closed.rcvd.code if closed.rcvd else 1006
    return await close_code(ws)


async def test_every_oversize_message_gets_1009(live):
    server, key = live["server"], live["keys"]["bob"]
    url, pid = f"{server.ws}?token={key}", server.process.pid
    async with websockets.connect(url, max_size=None) as ws:  # daphne takes it, the application refuses it
        assert await sent_and_refused(ws, "x" * DAPHNE_MAX) == 1009
    before = rss_bytes(pid)
    for size in (DAPHNE_MAX + 1, 2 * MIB, 20 * MIB):  # autobahn refuses these
        async with websockets.connect(url, max_size=None) as ws:
            assert await sent_and_refused(ws, "x" * size) == 1009, f"a {size}-byte message"
    grown = rss_bytes(pid) - before
    print(f"RSS grew by {grown / MIB:.1f} MiB refusing messages of 1-20 MiB")
    assert grown < 4 * MIB, f"RSS grew by {grown / MIB:.1f} MiB refusing messages of 1-20 MiB"


def test_a_huge_frame_gets_1009_from_its_header_alone(live):
    server, key = live["server"], live["keys"]["bob"]
    pid = server.process.pid
    before = rss_bytes(pid)
    for size in (DAPHNE_MAX + 1, 20 * MIB, 2**40):
        sock, received = raw_websocket(server.port, key)
        started = time.monotonic()
        sock.sendall(frame_header(size) + b"x" * 1024)  # and never the rest
        assert read_close_code(sock, received) == 1009, f"a frame that says it holds {size} bytes"
        took = time.monotonic() - started
        assert took < 2, f"1009 took {took:.1f} s"
        sock.close()
    grown = rss_bytes(pid) - before
    print(f"RSS grew by {grown / MIB:.1f} MiB; the last 1009 took {took * 1000:.0f} ms")
    assert grown < 4 * MIB, f"RSS grew by {grown / MIB:.1f} MiB"


# --- one budget for what stalled readers leave unsent --------------------------------


async def test_stalled_readers_are_dropped_within_the_process_budget(live):
    server, keys = live["server"], live["keys"]
    pid = server.process.pid
    stalled = []
    for _ in range(200):  # they subscribe, read the answer, and never read again
        sock, received = raw_websocket(server.port, keys["carol"], receive_buffer=4096)
        stalled.append(sock)
        sock.sendall(frame_header(53) + b'{"type":"subscribe","data":{"channels":["memories"]}}')
        while b'"subscribed"' not in received:
            received += sock.recv(4096)
    reader = await subscribed(server.ws, keys["bob"])
    seen: list[str] = []

    async def keep_reading():
        async for text in reader:
            frame = json.loads(text)
            if frame["type"] == "memory.created":
                seen.append(frame["data"]["memory"]["id"])

    reading = asyncio.create_task(keep_reading())
    try:
        baseline = await asyncio.to_thread(settled_rss, pid)
        peak_rss_reset(pid)
        created = []
        started = time.monotonic()
        for i in range(60):  # 200 x 60 x 90 KB = 1 GB of frames for clients that do not read
            status, memory = await asyncio.to_thread(
                api, server, "POST", "/api/v4/memories/", keys["alice"],
                {"title": f"big {i}", "content": "x" * 90_000, "visibility": "public"},
            )  # fmt: skip
            assert status == 201
            created.append(memory["id"])
        for _ in range(300):
            if len(seen) >= len(created):
                break
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        peak = peak_rss(pid)
        for _ in range(50):
            _, body = await asyncio.to_thread(api, server, "GET", "/api/v4/ws/status", keys["carol"])
            if body["user_connections"] == 0:
                break
            await asyncio.sleep(0.1)
    finally:
        reading.cancel()
        await reader.close()
        for sock in stalled:
            sock.close()
    print(f"RSS {baseline / MIB:.0f} MiB, peak +{(peak - baseline) / MIB:.0f} MiB; 60 writes: {elapsed:.1f} s")
    assert [memory_id for memory_id in seen if memory_id in created] == created, "the reading client missed events"
    assert body["user_connections"] == 0, "stalled clients are still connected"
    assert peak - baseline < BUFFERED_BUDGET + RSS_MARGIN, (
        f"RSS went from {baseline / MIB:.0f} to {peak / MIB:.0f} MiB with a {BUFFERED_BUDGET / MIB:.0f} MiB budget"
    )


# --- a deadline for request headers -----------------------------------------------


def drip(sock: socket.socket, data: bytes, every: float, limit: float) -> tuple[float, bytes]:
    """Send one byte every `every` seconds until the server closes (or `limit`); return when, and its answer."""
    started = time.monotonic()
    answer = b""
    sock.settimeout(every)
    for byte in data:
        if time.monotonic() - started > limit:
            break
        try:
            sock.sendall(bytes([byte]))
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        if not chunk:
            break
        answer += chunk
    return time.monotonic() - started, answer


def get(sock: socket.socket, path: str) -> bytes:
    """One keep-alive HTTP/1.1 GET on an open socket; the response's head."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(65536)
    head, body = response.split(b"\r\n\r\n", 1)
    length = int(next(line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:"))[15:])
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_a_client_that_drips_its_headers_is_cut_off(live):
    server = live["server"]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        request = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nX-Slow: " + b"a" * 100
        took, answer = drip(sock, request, every=0.5, limit=HEADER_TIMEOUT + 4)
    print(f"cut off after {took:.1f} s")
    assert HEADER_TIMEOUT - 0.5 < took < HEADER_TIMEOUT + 1.5, f"cut off after {took:.1f} s"
    assert answer.startswith(b"HTTP/1.1 408 ") and b"application/json" in answer, answer


def test_each_request_on_a_keep_alive_connection_gets_the_deadline(live):
    server = live["server"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        assert get(sock, "/api/v4/schema/").startswith(b"HTTP/1.1 200 ")
        time.sleep(HEADER_TIMEOUT / 2)
        assert get(sock, "/api/v4/schema/").startswith(b"HTTP/1.1 200 ")
        took, answer = drip(sock, b"GET /api/v4/schema/ HTTP/1.1\r\n" + b"X: y\r\n" * 20, every=0.5, limit=10)
    assert took < HEADER_TIMEOUT + 1.5, f"still connected after {took:.1f} s"
    assert answer.startswith(b"HTTP/1.1 408 "), answer


async def test_prompt_clients_are_unaffected_by_the_header_deadline(live):
    server, key = live["server"], live["keys"]["bob"]
    async with websockets.connect(f"{server.ws}?token={key}") as ws:
        await asyncio.sleep(HEADER_TIMEOUT + 1)  # the deadline is for the handshake's headers, not the connection
        await ws.send('{"type": "ping"}')
        assert '"pong"' in await ws.recv()
    status, _ = await asyncio.to_thread(api, server, "GET", "/api/v4/ws/status", key)
    assert status == 200
