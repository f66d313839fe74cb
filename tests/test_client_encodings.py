"""The Python client's MessagePack frames, compression and custom events (issue 12), against scripted `websockets`
servers that speak the issue's protocol contract; the server side of it is not built yet."""

import asyncio
import contextlib
import json
import signal
import sys
import uuid
from typing import Any

import msgpack
import pytest
import websockets
from puomemo_client import CHANNELS, DEFAULT_CHANNELS, PuoMemoClient
from puomemo_client.cli import main

from realtime import catalogue
from tests.support.pyclient import cli, next_event, read_line, record, running, stop_cli, until

MSGPACK = "puomemo.msgpack"
MEMORY_ID = "7d1f0a52-3c1e-4f0e-9a57-2b1c6a1e9d40"
AT = "2026-01-01T00:00:00Z"
EPOCH = "e1"  # the tenant stream's epoch a scripted server numbers its logged frames in


def envelope(message_type: str, data: dict, seq: int | None = None) -> dict:
    """A server frame, held to the catalogue (custom.* ones to the contract) before a scripted server sends it."""
    frame = {"id": str(uuid.uuid4()), "type": message_type, "timestamp": AT, "data": data}
    frame |= {"seq": seq, "epoch": EPOCH} if seq is not None else {}
    if message_type.startswith("custom."):
        assert set(frame) == {"id", "type", "timestamp", "data"}, frame  # ephemeral: no seq
        assert set(data) == {"event", "payload", "memory_id", "user_id", "user_name"} and data["event"] == message_type
    else:
        catalogue.check_frame(frame)  # conftest cannot see inside binary frames: check them here
    return frame


def created(title: str, content: str = "", seq: int = 1) -> dict:
    memory = {"id": MEMORY_ID, "title": title, "content": content, "tags": ["a"], "visibility": "team", "version": 1}
    data = {"memory": memory | {"created_at": AT, "updated_at": AT}, "user_id": "1", "user_name": "alice"}
    return envelope("memory.created", data, seq)


def custom(event: str, payload: dict, memory_id: str | None, user: str) -> dict:
    data = {"event": event, "payload": payload, "memory_id": memory_id, "user_id": "1", "user_name": user}
    return envelope(event, data)


def choose(connection, offers: list[str]) -> str | None:
    """The contract: the first of the client's offers the server knows; none known → JSON, nothing echoed."""
    return next((offer for offer in offers if offer in (MSGPACK, "puomemo.json")), None)


@contextlib.asynccontextmanager
async def scripted(script, *, knows_msgpack: bool = True):
    """A real websockets server running `script(ws)` for each connection; yields its /ws URL.

    One that does not know MessagePack selects no subprotocol, as servers before issue 12 do.
    """
    options: dict[str, Any] = {"select_subprotocol": choose} if knows_msgpack else {}
    async with websockets.serve(script, "127.0.0.1", 0, **options) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"


async def receive(ws) -> tuple[str, dict]:
    """A client frame and its kind ("text" or "binary"), decoded as the connection's subprotocol says.

    Read with recv_streaming(): recv() would hold the client's frames to the catalogue of server frames.
    """
    parts = [part async for part in ws.recv_streaming()]
    message = parts[0][:0].join(parts)
    frame = msgpack.unpackb(message) if ws.subprotocol == MSGPACK else json.loads(message)
    return ("binary" if isinstance(message, bytes) else "text"), frame


async def send(ws, frame: dict) -> None:
    """One frame in the connection's encoding: a binary MessagePack frame, or a text JSON frame."""
    await ws.send(msgpack.packb(frame) if ws.subprotocol == MSGPACK else json.dumps(frame))


async def subscribe(ws) -> tuple[str, dict]:
    """Read the client's `subscribe` and confirm it; return it as received."""
    kind, frame = await receive(ws)
    assert frame["type"] == "subscribe", frame
    await send(ws, envelope("subscribed", {"channels": frame["data"]["channels"]}))
    return kind, frame


async def eventually(condition, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def handshake(ws) -> dict:
    """What a scripted server saw of the handshake: the subprotocols offered and chosen, the extensions."""
    return {
        "offered": ws.request.headers.get("Sec-WebSocket-Protocol"),
        "subprotocol": ws.subprotocol,
        "extensions": [extension.name for extension in ws.protocol.extensions],
    }


async def test_msgpack_and_json_clients_get_the_same_events_each_in_its_own_encoding(caplog):
    events = [
        created("first", seq=3),
        envelope("memory.typing", {"memory_id": MEMORY_ID, "user_id": "1", "user_name": "alice"}),
        envelope("tenant.user_joined", {"user_id": "2", "user_name": "bob", "connection_id": "c2"}),
    ]
    users = {"users": [{"user_id": "2", "user_name": "bob", "connections": 1}]}
    seen: dict[str, dict] = {}

    async def serve(ws) -> None:
        name = ws.request.path.rsplit("=", 1)[1]
        seen[name] = handshake(ws) | {"frames": [await subscribe(ws)]}
        if ws.subprotocol == MSGPACK:  # a JSON client would choke on these in conftest's catalogue check
            await ws.send(b"\xc1")  # not MessagePack: dropped, and the connection goes on
            await ws.send(msgpack.packb({"data": {}}))  # no type: dropped
        for frame in events:
            await send(ws, frame)
        seen[name]["frames"].append(await receive(ws))  # presence()
        await send(ws, envelope("presence", users))
        await ws.wait_closed()

    async with scripted(serve) as url:
        clients = {
            "json": PuoMemoClient("json", url, encoding="json"),
            "msgpack": PuoMemoClient("msgpack", url, encoding="msgpack"),
        }
        received: dict[str, list] = {name: [] for name in clients}
        for name, client in clients.items():
            for event in ("*", "memory.created", "memory.typing", "tenant.user_joined", "presence"):
                client.on(event, lambda data, name=name, event=event: received[name].append((event, data)))
        async with running(*clients.values()):
            for client in clients.values():
                assert await client.presence() == users["users"]
            encodings = {name: client.connection_encoding for name, client in clients.items()}
            # The handlers run in a task of their own: wait for them to reach the `presence` reply.
            await eventually(lambda: all(received[name][-1:] == [("presence", users)] for name in clients))
    assert encodings == {"json": "json", "msgpack": "msgpack"}
    assert {name: client.connection_encoding for name, client in clients.items()} == {"json": None, "msgpack": None}
    assert (seen["json"]["offered"], seen["json"]["subprotocol"]) == (None, None)
    assert (seen["msgpack"]["offered"], seen["msgpack"]["subprotocol"]) == (MSGPACK, MSGPACK)
    for name, kind in (("json", "text"), ("msgpack", "binary")):
        frames = seen[name]["frames"]
        assert [(k, frame["type"], frame["data"]) for k, frame in frames] == [
            (kind, "subscribe", {"channels": list(DEFAULT_CHANNELS)}),
            (kind, "presence", None),
        ]
        assert all(set(frame) == {"id", "type", "timestamp", "data"} for _, frame in frames)
        assert clients[name].last_seq == 3  # the seq of a MessagePack frame counts too
    subscribed = envelope("subscribed", {"channels": list(DEFAULT_CHANNELS)})
    for name in clients:
        whole = [data for event, data in received[name] if event == "*"]
        assert [frame["type"] for frame in whole] == ["subscribed", *(frame["type"] for frame in events), "presence"]
        assert whole[1:4] == events  # the envelope exactly: id, timestamp and seq as sent
        assert whole[0]["data"] == subscribed["data"]
        by_type = [(event, data) for event, data in received[name] if event != "*"]
        assert by_type == [(frame["type"], frame["data"]) for frame in events] + [("presence", users)]
    assert sum("Failed to parse message" in entry.message for entry in caplog.records) == 1  # b"\xc1"


async def test_a_msgpack_client_speaks_json_when_the_server_selects_no_subprotocol():
    seen: dict = {}

    async def serve(ws) -> None:  # a server before issue 12: it knows no subprotocol
        seen.update(handshake(ws), frames=[await subscribe(ws)])
        await send(ws, created("in json", seq=1))
        seen["frames"].append(await receive(ws))
        await ws.wait_closed()

    async with scripted(serve, knows_msgpack=False) as url:
        client = PuoMemoClient("pm_x", url, encoding="msgpack")
        heard = record(client, "memory.created")
        async with running(client):
            assert (await next_event(heard, "memory.created"))["memory"]["title"] == "in json"
            assert client.connection_encoding == "json" and client.encoding == "msgpack"
            assert await client.publish("custom.note", {"n": 1})
            await eventually(lambda: len(seen["frames"]) == 2)
    assert (seen["offered"], seen["subprotocol"]) == (MSGPACK, None)
    assert [(kind, frame["type"]) for kind, frame in seen["frames"]] == [("text", "subscribe"), ("text", "publish")]
    assert seen["frames"][1][1]["data"] == {"event": "custom.note", "payload": {"n": 1}}


async def test_compression_is_offered_by_default_and_off_with_none_and_a_large_memory_arrives_intact():
    content = "".join(f"line {i}: the memory's text, long and repetitive\n" for i in range(1_800))  # ~90 KB
    assert len(content) > 80_000
    seen: dict[str, dict] = {}

    async def serve(ws) -> None:
        seen[ws.request.path.rsplit("=", 1)[1]] = handshake(ws)
        await subscribe(ws)
        await send(ws, created("large", content))
        await ws.wait_closed()

    with pytest.raises(ValueError, match="compression"):
        PuoMemoClient("pm_x", compression="gzip")
    with pytest.raises(ValueError, match="encoding"):
        PuoMemoClient("pm_x", encoding="cbor")
    async with scripted(serve) as url:
        clients = {
            "json-deflate": PuoMemoClient("json-deflate", url),
            "msgpack-deflate": PuoMemoClient("msgpack-deflate", url, encoding="msgpack"),
            "msgpack-off": PuoMemoClient("msgpack-off", url, encoding="msgpack", compression=None),
        }
        heard = {name: record(client, "memory.created") for name, client in clients.items()}
        async with running(*clients.values()):
            for queue in heard.values():
                assert (await next_event(queue, "memory.created"))["memory"]["content"] == content
    assert {name: handshake["extensions"] for name, handshake in seen.items()} == {
        "json-deflate": ["permessage-deflate"],
        "msgpack-deflate": ["permessage-deflate"],
        "msgpack-off": [],
    }
    assert seen["msgpack-deflate"]["subprotocol"] == MSGPACK and seen["msgpack-off"]["subprotocol"] == MSGPACK


@pytest.mark.parametrize(
    "event",
    ["custom.", "custom.A", "custom._a", "custom.-a", "custom." + "a" * 65, "custom.a b", "custom.a\n",
     "custom.é", "Custom.a", "memory.created", "custom", 5, None],
)  # fmt: skip
async def test_publish_refuses_a_malformed_event_name(event):
    client = PuoMemoClient("pm_x", "ws://127.0.0.1:9/ws")
    with pytest.raises(ValueError, match="custom"):
        await client.publish(event, {})


async def test_publish_checks_its_arguments_and_is_false_when_not_connected():
    client = PuoMemoClient("pm_x", "ws://127.0.0.1:9/ws")
    for event in ("custom.a", "custom.0", "custom." + "a" * 64, "custom.note.saved-1_x"):
        assert await client.publish(event, {"x": 1}, memory_id=MEMORY_ID) is False  # a valid name, no connection
    for payload in ([1], "text", None):
        with pytest.raises(ValueError, match="payload"):
            await client.publish("custom.a", payload)
    for memory_id in ("m1", 7, ""):
        with pytest.raises(ValueError, match="memory_id"):
            await client.publish("custom.a", {}, memory_id=memory_id)


async def test_published_custom_events_go_out_in_the_contracts_frame_and_arrive_at_their_handlers():
    """A scripted relay: a `publish` goes to the other connections subscribed to `custom`, as the contract says."""
    connections: dict[str, tuple[Any, list[str]]] = {}
    published: list[tuple[str, str, dict]] = []

    async def serve(ws) -> None:
        user = ws.request.path.rsplit("=", 1)[1]
        connections[user] = (ws, (await subscribe(ws))[1]["data"]["channels"])
        while True:
            kind, frame = await receive(ws)
            published.append((user, kind, frame))
            data = frame["data"]
            relayed = custom(data["event"], data["payload"], data.get("memory_id"), user)
            for other, (peer, channels) in list(connections.items()):
                if other != user and "custom" in channels:
                    await send(peer, relayed)

    async with scripted(serve) as url:
        alice = PuoMemoClient("alice", url, channels=["memories"])
        bob = PuoMemoClient("bob", url, encoding="msgpack", channels=CHANNELS)
        heard = record(bob, "custom.cursor", "custom.note.saved-1_x", "custom.other")
        async with running(alice, bob):
            assert await alice.publish("custom.cursor", {"x": 1, "y": [2, 3]}, memory_id=MEMORY_ID)
            assert await alice.publish("custom.note.saved-1_x", {"text": "héllo"})
            cursor = await next_event(heard, "custom.cursor")
            note = await next_event(heard, "custom.note.saved-1_x")
            assert await bob.publish("custom.cursor", {"x": 2}, memory_id=uuid.UUID(MEMORY_ID))
            await eventually(lambda: len(published) == 3)
            rest = [heard.get_nowait() for _ in range(heard.qsize())]
    assert cursor == {
        "event": "custom.cursor",
        "payload": {"x": 1, "y": [2, 3]},
        "memory_id": MEMORY_ID,
        "user_id": "1",
        "user_name": "alice",
    }
    assert (note["payload"], note["memory_id"]) == ({"text": "héllo"}, None)
    assert rest == []  # each custom event once, to its own handlers; nothing to custom.other
    assert bob.last_seq is None  # custom events carry no seq
    assert [(user, kind, frame["type"], frame["data"]) for user, kind, frame in published] == [
        (
            "alice",
            "text",
            "publish",
            {"event": "custom.cursor", "payload": {"x": 1, "y": [2, 3]}, "memory_id": MEMORY_ID},
        ),
        ("alice", "text", "publish", {"event": "custom.note.saved-1_x", "payload": {"text": "héllo"}}),
        ("bob", "binary", "publish", {"event": "custom.cursor", "payload": {"x": 2}, "memory_id": MEMORY_ID}),
    ]


async def test_star_handlers_get_custom_frames_whole():
    frames = [custom("custom.cursor", {"x": 1}, None, "alice"), custom("custom.ping-2", {}, MEMORY_ID, "alice")]

    async def serve(ws) -> None:
        await subscribe(ws)
        for frame in frames:
            await send(ws, frame)
        await ws.wait_closed()

    async with scripted(serve) as url:
        client = PuoMemoClient("pm_x", url, encoding="msgpack", channels=["custom"])
        heard = record(client, "*")
        async with running(client):
            whole = [await next_event(heard, "*") for _ in range(3)]
    assert whole[0]["type"] == "subscribed" and whole[1:] == frames


async def test_the_cli_prints_json_lines_from_msgpack_frames_custom_events_included(tmp_path):
    event = created("over msgpack", seq=4)
    cursor = custom("custom.cursor", {"x": 1}, MEMORY_ID, "alice")
    seen: list[dict] = []

    async def serve(ws) -> None:
        seen.append(handshake(ws) | {"subscribe": await subscribe(ws)})
        await send(ws, event)
        await send(ws, envelope("pong", {"timestamp": AT}))  # a reply, not an event: not printed
        if "custom" in seen[-1]["subscribe"][1]["data"]["channels"]:
            await send(ws, cursor)
        await ws.wait_closed()

    async with scripted(serve) as url:
        tail = await cli(
            "--url", url, "--channels", "memories,custom", "--encoding", "msgpack", token="pm_x", cwd=tmp_path
        )
        try:
            assert "connected over msgpack; subscribed to memories, custom" in await until(tail.stderr, "connected")
            assert json.loads(await read_line(tail.stdout)) == event
            assert json.loads(await read_line(tail.stdout)) == cursor
        finally:
            stdout, _ = await stop_cli(tail, signal.SIGINT)
    assert tail.returncode == 0 and stdout == b""
    assert (seen[0]["subprotocol"], seen[0]["extensions"]) == (MSGPACK, ["permessage-deflate"])
    assert seen[0]["subscribe"][0] == "binary"

    async with scripted(serve, knows_msgpack=False) as url:
        tail = await cli("--url", url, "--encoding", "msgpack", "--no-compression", token="pm_x", cwd=tmp_path)
        try:
            assert "connected over json; subscribed to memories, tenant.updates" in await until(
                tail.stderr, "connected"
            )
            assert json.loads(await read_line(tail.stdout)) == event
        finally:
            stdout, _ = await stop_cli(tail, signal.SIGTERM)
    assert tail.returncode == 0 and stdout == b""
    assert (seen[1]["offered"], seen[1]["subprotocol"], seen[1]["extensions"]) == (MSGPACK, None, [])
    assert seen[1]["subscribe"][0] == "text"


def test_msgpack_is_an_optional_extra_with_a_clear_error_when_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "msgpack", None)  # `import msgpack` raises ImportError
    PuoMemoClient("pm_x")  # JSON needs nothing more
    with pytest.raises(ImportError, match=r"pip install 'puomemo-client\[msgpack\]'"):
        PuoMemoClient("pm_x", encoding="msgpack")
    with pytest.raises(SystemExit) as exited:
        main(["tail", "--token", "pm_x", "--encoding", "msgpack"])
    assert exited.value.code == 2 and "puomemo-client[msgpack]" in capsys.readouterr().err
