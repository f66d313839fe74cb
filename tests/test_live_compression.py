"""Against a real daphne process: permessage-deflate negotiated or not, MessagePack connections, mixed encodings."""

import asyncio
import contextlib
import json
import random
import re
import zlib

import msgpack
import pytest
import websockets
from autobahn.websocket.compress import PerMessageDeflate
from playwright.sync_api import expect, sync_playwright
from puomemo_client import PuoMemoClient
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from realtime import daphne
from tests.support.browser import logged_in
from tests.support.live import api, close_code, from_puomemo, peak_rss, peak_rss_reset, settled_rss
from tests.support.pyclient import next_event, record, running

pytestmark = pytest.mark.live

MIB = 1_048_576
USERS = {"alice": ("live", "admin"), "bob": ("live", "member"), "carol": ("live", "member")}


@pytest.fixture(scope="module")
def live(cluster_factory):
    """One server with the default settings: compression on, 1 MiB message limit."""
    cluster = cluster_factory("live-compression", users=USERS, count=1)
    return {"server": cluster.servers[0], "keys": cluster.keys}


def prose(size: int) -> str:
    """Text that compresses about as well as writing does (random words, not one repeated letter)."""
    rng = random.Random(12)
    words = ["".join(rng.choice("etaoinshrdlucmfwyp") for _ in range(rng.randint(2, 9))) for _ in range(2000)]
    text = ""
    while len(text) < size:
        text += " ".join(rng.choice(words) for _ in range(200)) + ". "
    return text[:size]


async def connect(
    live, user: str, *, msgpacked: bool = False, compression: str | None = "deflate", fast_deflate: bool = False
):
    """A connection, subscribed to memories, that counts the bytes it reads off the socket in `ws.wire_bytes`."""
    ws = await websockets.connect(
        f"{live['server'].ws}?token={live['keys'][user]}",
        subprotocols=["puomemo.msgpack"] if msgpacked else None,
        # zlib's level 1 compresses 64 MiB of prose in a third of the default's CPU: a client on a busy
        # machine still reads the server's close within its close handshake.
        compression=None if fast_deflate else compression,
        extensions=[ClientPerMessageDeflateFactory(compress_settings={"level": 1, "memLevel": 5})]
        if fast_deflate
        else None,
        max_size=None,
    )
    ws.wire_bytes = 0
    received = ws.data_received

    def counted(data: bytes) -> None:
        ws.wire_bytes += len(data)
        received(data)

    ws.data_received = counted  # the transport calls its protocol's method by name
    await send(ws, {"type": "subscribe", "data": {"channels": ["memories"]}})
    assert (await receive(ws))["type"] == "subscribed"
    return ws


async def send(ws, frame: dict) -> None:
    await ws.send(msgpack.packb(frame) if ws.subprotocol == "puomemo.msgpack" else json.dumps(frame))


async def receive(ws, message_type: str | None = None) -> dict:
    """The next frame (of a type), decoded; a MessagePack connection's must all be binary."""
    while True:
        raw = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(raw, bytes) == (ws.subprotocol == "puomemo.msgpack"), raw[:100]
        frame = msgpack.unpackb(raw) if isinstance(raw, bytes) else json.loads(raw)
        if message_type is None or frame["type"] == message_type:
            return frame


async def create(live, title: str, content: str = "") -> dict:
    status, memory = await asyncio.to_thread(
        api, live["server"], "POST", "/api/v4/memories/", live["keys"]["alice"],
        {"title": title, "content": content, "visibility": "team"},
    )  # fmt: skip
    assert status == 201, memory
    return memory


async def test_compression_is_negotiated_when_offered_and_not_otherwise(live):
    offered = await connect(live, "bob")
    plain = await connect(live, "bob", compression=None)
    extensions = offered.response.headers.get("Sec-WebSocket-Extensions", "")
    assert extensions.startswith("permessage-deflate") and "server_no_context_takeover" in extensions
    assert [type(e).__name__ for e in offered.protocol.extensions] == ["PerMessageDeflate"]
    assert "Sec-WebSocket-Extensions" not in plain.response.headers and plain.protocol.extensions == []
    for ws in (offered, plain):
        await ws.close()


async def test_a_60_kb_memory_reaches_json_and_msgpack_connections_alike_and_compressed_on_the_wire(live):
    plain = await connect(live, "bob", compression=None)
    compressed = await connect(live, "bob")
    msgpacked = await connect(live, "carol", msgpacked=True)
    msgpacked_plain = await connect(live, "carol", msgpacked=True, compression=None)
    connections = [plain, compressed, msgpacked, msgpacked_plain]
    before = [ws.wire_bytes for ws in connections]
    content = prose(60_000)
    memory = await create(live, "big", content)
    frames = [await receive(ws, "memory.created") for ws in connections]
    wire = [ws.wire_bytes - start for ws, start in zip(connections, before, strict=True)]
    assert frames[0]["data"]["memory"]["content"] == content and frames[0]["data"]["memory"]["id"] == memory["id"]
    assert all(frame == frames[0] for frame in frames)  # the same envelope and seq, whatever the encoding
    assert isinstance(frames[0]["seq"], int)
    # permessage-deflate took at least a third off (prose compresses to about half).
    assert wire[1] < wire[0] * 2 / 3 and wire[2] < wire[3] * 2 / 3, wire
    for ws in connections:
        await ws.close()


async def test_a_compressed_oversize_message_closes_1009_without_inflating_the_server(live):
    pid = live["server"].process.pid
    ws = await connect(live, "bob")
    baseline = await asyncio.to_thread(settled_rss, pid)
    peak_rss_reset(pid)
    # 64 MiB of one byte deflates to ~64 KB on the wire, well under the limit: only its
    # decompressed size is over it, and the server must stop inflating there.
    with contextlib.suppress(websockets.ConnectionClosed):
        await ws.send(" " * (64 * MIB))
    assert await close_code(ws) == 1009
    assert peak_rss(pid) - baseline < 24 * MIB  # inflated whole (and decoded) it would be 64-128 MiB more
    # 1.5 MiB of prose compressed (well under 1 MiB on the wire) is over the limit too.
    ws = await connect(live, "bob")
    with contextlib.suppress(websockets.ConnectionClosed):
        await ws.send(json.dumps({"type": "ping", "data": {"pad": prose(3 * MIB // 2)}}))
    assert await close_code(ws) == 1009
    still = await connect(live, "bob")  # the server goes on
    await send(still, {"type": "ping"})
    assert (await receive(still))["type"] == "pong"
    await still.close()


async def test_a_msgpack_connection_round_trips_every_message_type(live):
    ws = await connect(live, "bob", msgpacked=True)
    assert ws.subprotocol == "puomemo.msgpack"
    assert from_puomemo(ws)  # conftest holds each binary frame received here to the catalogue
    await send(ws, {"type": "ping", "id": "p1", "timestamp": "2026-01-01T00:00:00Z"})
    pong = await receive(ws)
    assert pong["type"] == "pong" and set(pong) == {"id", "type", "timestamp", "data"}
    assert isinstance(pong["timestamp"], str) and pong["timestamp"].endswith("Z")
    await send(ws, {"type": "presence"})
    users = (await receive(ws, "presence"))["data"]["users"]
    assert "bob" in {user["user_name"] for user in users}
    await send(ws, {"type": "nonsense"})
    assert (await receive(ws))["data"] == {"message": "Unknown message type: nonsense"}
    await ws.send('{"type": "ping"}')  # a text frame on a MessagePack connection
    assert (await receive(ws))["data"] == {"message": "Invalid message format"}
    first = await create(live, "one")
    created = await receive(ws, "memory.created")
    assert created["data"]["memory"]["id"] == first["id"] and created["seq"] > 0
    status, _ = await asyncio.to_thread(
        api, live["server"], "PATCH", f"/api/v4/memories/{first['id']}/", live["keys"]["alice"], {"title": "two"}
    )
    assert status == 200
    updated = await receive(ws, "memory.updated")
    assert updated["seq"] == created["seq"] + 1
    # This connection got both live, so a resume repeats neither; another connection gets both replayed.
    await send(ws, {"type": "resume", "data": {"last_seq": created["seq"] - 1}})
    resumed = await receive(ws)
    assert (resumed["type"], resumed["data"]) == ("resumed", {"last_seq": updated["seq"], "epoch": updated["epoch"]})
    again = await connect(live, "bob", msgpacked=True)
    await send(again, {"type": "resume", "data": {"last_seq": created["seq"] - 1}})
    replayed = [await receive(again), await receive(again), await receive(again)]
    await again.close()
    assert [(f["type"], f.get("seq")) for f in replayed] == [
        ("memory.created", created["seq"]),
        ("memory.updated", updated["seq"]),
        ("resumed", None),
    ]
    assert replayed[2]["data"] == {"last_seq": updated["seq"], "epoch": updated["epoch"]}
    await send(ws, {"type": "unsubscribe", "data": {"channels": ["memories"]}})
    assert (await receive(ws))["type"] == "unsubscribed"
    await ws.close()


async def test_a_json_connection_sending_a_binary_frame_gets_the_error_it_always_got(live):
    ws = await connect(live, "bob")
    await ws.send(msgpack.packb({"type": "ping"}))
    assert (await receive(ws)) | {"id": None, "timestamp": None} == {
        "id": None,
        "type": "error",
        "timestamp": None,
        "data": {"message": "Invalid message format"},
    }
    await ws.close()


async def test_the_python_client_with_msgpack_receives_events_from_a_real_server(live):
    bob = PuoMemoClient(live["keys"]["bob"], live["server"].ws, encoding="msgpack")
    events = record(bob, "memory.created")
    async with running(bob):
        assert bob.connection_encoding == "msgpack"
        memory = await create(live, "for the client", prose(5000))
        data = await next_event(events, "memory.created")
        assert data["memory"]["id"] == memory["id"] and data["memory"]["content"] == memory["content"]


@pytest.mark.browser
def test_the_web_test_client_shows_msgpack_frames_decoded(live):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        try:
            page = logged_in(browser, live["server"], "alice")
            page.goto(f"{live['server'].http}/ws/test-client/")
            page.get_by_label("Encoding").select_option("msgpack")
            page.get_by_role("button", name="Connect", exact=True).click()
            expect(page.locator("#tc-state")).to_have_text("open", timeout=5000)
            # Chromium offers permessage-deflate: negotiated, and each message compressed on its own.
            expect(page.locator("#tc-log")).to_contain_text("open (MessagePack, permessage-deflate", timeout=5000)
            page.get_by_role("button", name="Ping").click()
            expect(page.locator("#tc-log .frame-out").last).to_contain_text('[binary, 11 bytes] {"type":"ping"}')
            pong = page.locator("#tc-log .frame-in").last
            expect(pong).to_contain_text(re.compile(r'\[binary, \d+ bytes\] \{"id":"[^"]+","type":"pong"'))
            page.get_by_label("Raw frame").fill("not json")  # sent as a text frame: refused on MessagePack
            page.get_by_role("button", name="Send").click()
            expect(page.locator("#tc-log .frame-in").last).to_contain_text(
                '"data":{"message":"Invalid message format"}'
            )
        finally:
            browser.close()


@pytest.mark.parametrize("fragments", [(20, MIB), (64, MIB)], ids=["20x1MiB-prose", "64x1MiB-prose"])
async def test_an_oversize_message_sent_compressed_in_fragments_closes_1009_not_1006(live, fragments):
    """The client is still sending when the server refuses: it must still read the 1009, not a dropped connection."""
    count, size = fragments
    ws = await connect(live, "bob", fast_deflate=True)
    chunk = prose(size)
    with contextlib.suppress(websockets.ConnectionClosed):
        await ws.send(iter([chunk] * count))
    assert await close_code(ws) == 1009


async def test_the_client_is_asked_for_no_context_takeover_and_its_messages_still_arrive(live):
    """Then the server makes a decompressor per client message and frees it after: an idle socket holds none."""
    ws = await connect(live, "bob")
    extensions = ws.response.headers["Sec-WebSocket-Extensions"]
    assert "server_no_context_takeover" in extensions and "client_no_context_takeover" in extensions
    for i in range(3):  # each compressed with a fresh context, each understood
        await send(ws, {"type": "ping", "data": {"pad": prose(2000 + i)}})
        assert (await receive(ws, "pong"))["type"] == "pong"
    await ws.close()


def test_a_server_deflate_frees_its_decompressor_after_each_message():
    """The patched autobahn extension holds no zlib state between messages without client context takeover."""
    daphne.install()  # as serve and the ASGI app do (idempotent)
    deflate = PerMessageDeflate(
        is_server=True,
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=15,
        client_max_window_bits=15,
        mem_level=8,
    )
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = compressor.compress(b"hello " * 100) + compressor.flush(zlib.Z_SYNC_FLUSH)
    deflate.start_decompress_message()
    assert deflate.decompress_message_data(payload[:-4]) == b"hello " * 100
    deflate.end_decompress_message()
    assert deflate._decompressor is None
