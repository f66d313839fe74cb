"""Every connection released, whatever it was doing: clients that stall or leave in the middle of a long replay,
against real daphne processes on one Redis."""

import asyncio
import json
import socket
import time

import pytest
import websockets

from tests.support.live import api, long_log, masked_text_frame, metric, raw_websocket, rss_bytes

pytestmark = pytest.mark.live

EVENTS = 600
CONTENT_BYTES = 90_000  # 600 events of 90 KB: a 54 MB replay for each resume from the start
BUDGET = 8 * 1_048_576


@pytest.fixture(scope="module")
def live(cluster_factory):
    users = {"alice": ("rel", "admin"), "carol": ("rel", "guest"), "fay": ("rel", "member")}
    settings = {
        "PUOMEMO_WS_MAX_BUFFERED_BYTES": str(256 * 1024),
        "PUOMEMO_WS_MAX_BUFFERED_BYTES_TOTAL": str(BUDGET),
        "PUOMEMO_WS_STALL_SECONDS": "2",
    }
    cluster = cluster_factory("release", users=users, settings=settings)
    long_log(cluster.env, "alice", events=EVENTS, content_bytes=CONTENT_BYTES)
    return cluster


def status(server, key: str) -> dict:
    return api(server, "GET", "/api/v4/ws/status", key)[1]


def wait_for(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def stalled_resumer(port: int, key: str) -> socket.socket:
    """A client that asks for the whole log and then never reads."""
    sock, _ = raw_websocket(port, key, receive_buffer=4096)
    sock.sendall(masked_text_frame('{"type": "resume", "data": {"last_seq": 0}}'))
    return sock


async def reader_that_leaves(url: str, key: str, frames: int) -> int:
    """A client that resumes from the start, reads `frames` replayed frames, then closes cleanly."""
    async with websockets.connect(f"{url}?token={key}", max_size=None, max_queue=4) as ws:
        await ws.send(json.dumps({"type": "resume", "data": {"last_seq": 0}}))
        for _ in range(frames):
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "memory.created"
    return frames


async def pong_delays(url: str, key: str, seconds: float) -> list[float]:
    """How long each ping waits for its pong on a connection of its own, for `seconds`."""
    delays = []
    async with websockets.connect(f"{url}?token={key}") as ws:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sent = time.monotonic()
            await ws.send('{"type": "ping"}')
            while json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] != "pong":
                pass
            delays.append(time.monotonic() - sent)
            await asyncio.sleep(0.05)
    return delays


def test_stalled_and_departing_resumers_are_released_at_once(live):
    """5 resumers that never read and 5 that read 200 frames and leave: counts, gauge and memory come back."""
    server = live.servers[0]
    pid = server.process.pid
    before = rss_bytes(pid)
    stalled = [stalled_resumer(server.port, live.keys["carol"]) for _ in range(5)]
    assert wait_for(lambda: status(server, live.keys["carol"])["user_connections"] == 5, 10)

    async def readers() -> list[int]:
        return await asyncio.gather(*(reader_that_leaves(server.ws, live.keys["fay"], 200) for _ in range(5)))

    assert asyncio.run(readers()) == [200] * 5
    peak = rss_bytes(pid)
    # The stalled ones are dropped like any client that stops reading; closing them changes nothing further.
    assert wait_for(lambda: status(server, live.keys["carol"])["user_connections"] == 0, 15)
    for sock in stalled:
        sock.close()
    assert wait_for(lambda: status(server, live.keys["fay"])["user_connections"] == 0, 10)
    assert metric(server, "puomemo_websocket_connections") == 0
    # What a replay holds is bounded by the unsent-bytes budget and a page of the log, not the 54 MB log.
    grown = max(peak, rss_bytes(pid)) - before
    print(f"RSS grown by {grown / 1_048_576:.0f} MiB for 10 resumes of a {EVENTS * CONTENT_BYTES / 1e6:.0f} MB log")
    assert grown < BUDGET + 48 * 1_048_576, grown

    async def reconnect() -> list[int]:
        sockets = [await websockets.connect(f"{server.ws}?token={live.keys['carol']}") for _ in range(5)]
        for ws in sockets:
            await ws.send('{"type": "ping"}')
        pongs = [json.loads(await ws.recv())["type"] for ws in sockets]
        for ws in sockets:
            await ws.close()
        return pongs

    assert asyncio.run(reconnect()) == ["pong"] * 5  # all five of the user's slots are free again


def test_a_resumer_that_drops_its_tcp_connection_is_released(live):
    """No close frame at all, mid-replay: the server finds out from TCP and releases the slot."""
    server = live.servers[1]
    sock = stalled_resumer(server.port, live.keys["carol"])
    sock.recv(65536)  # the replay has started
    assert wait_for(lambda: status(server, live.keys["carol"])["user_connections"] == 1, 10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # an RST, as from a phone that lost its network
    assert wait_for(lambda: status(server, live.keys["carol"])["user_connections"] == 0, 10)
    assert metric(server, "puomemo_websocket_connections") == 0


def test_long_replays_do_not_hold_up_other_connections(live):
    """The worst pong delay on another connection while 5 resumes from the start are built and sent."""
    server = live.servers[1]

    async def scenario() -> tuple[list[float], list[int]]:
        quiet = await pong_delays(server.ws, live.keys["alice"], 1)
        busy = asyncio.create_task(pong_delays(server.ws, live.keys["alice"], 4))
        await asyncio.sleep(0.2)
        readers = await asyncio.gather(*(reader_that_leaves(server.ws, live.keys["fay"], 300) for _ in range(5)))
        return quiet, await busy, readers

    quiet, busy, readers = asyncio.run(scenario())
    assert readers == [300] * 5
    print(f"pong delay: quiet max {max(quiet) * 1000:.0f} ms, during 5 replays max {max(busy) * 1000:.0f} ms")
    assert max(busy) < 1.0, busy  # 3.5 s before replays were paged; a replay slice is milliseconds
