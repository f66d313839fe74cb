"""MessagePack by subprotocol, in process: the choice, client frames either way, and one encoding per audience."""

import json
import zlib

import msgpack
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction

from realtime import frames, rendering
from realtime.routing import websocket_application
from tests.support.auth import jwt_for
from tests.support.factories import MemoryFactory
from tests.support.wsclient import close_code

pytestmark = pytest.mark.django_db(transaction=True)


async def open_ws(token: str, subprotocols: list[str] | None = None) -> tuple[WebsocketCommunicator, str | None]:
    comm = WebsocketCommunicator(websocket_application(), f"/ws?token={token}", subprotocols=subprotocols)
    connected, chosen = await comm.connect()
    assert connected
    return comm, chosen


async def send(comm: WebsocketCommunicator, msgpacked: bool, frame: dict) -> None:
    if msgpacked:
        await comm.send_to(bytes_data=msgpack.packb(frame))
    else:
        await comm.send_to(text_data=json.dumps(frame))


async def receive(comm: WebsocketCommunicator, msgpacked: bool) -> dict:
    message = await comm.receive_output(5)
    assert message["type"] == "websocket.send", message
    if msgpacked:
        assert message.get("text") is None
        return msgpack.unpackb(message["bytes"])
    assert message.get("bytes") is None
    return json.loads(message["text"])


@pytest.mark.parametrize(
    ("offers", "chosen"),
    [
        (["puomemo.msgpack"], "puomemo.msgpack"),
        (["puomemo.json"], "puomemo.json"),
        (["x.unknown", "puomemo.msgpack", "puomemo.json"], "puomemo.msgpack"),
        (["puomemo.json", "puomemo.msgpack"], "puomemo.json"),
        (["x.unknown"], None),
        (None, None),
    ],
)
async def test_the_first_known_subprotocol_offered_is_chosen_and_echoed(make_user, offers, chosen):
    user = await database_sync_to_async(make_user)()
    comm, echoed = await open_ws(jwt_for(user), offers)
    assert echoed == chosen
    msgpacked = chosen == "puomemo.msgpack"
    await send(comm, msgpacked, {"type": "ping"})
    assert (await receive(comm, msgpacked))["type"] == "pong"
    await comm.disconnect()


@pytest.mark.parametrize(
    "bad",
    [
        "text",  # a text frame on a MessagePack connection
        msgpack.packb([1, 2]),  # not a map
        msgpack.packb({"type": 1}),  # type not a string
        msgpack.packb({1: "ping"}),  # a key that is not a string
        b"\xc1",  # never used in MessagePack
        msgpack.packb({"type": "ping"}) + b"\x00",  # extra data
        b"\x91" * 5000,  # nested too deeply
    ],
)
async def test_a_msgpack_connection_answers_bad_frames_with_the_invalid_frame_error(make_user, bad):
    user = await database_sync_to_async(make_user)()
    comm, _ = await open_ws(jwt_for(user), ["puomemo.msgpack"])
    await (comm.send_to(text_data=bad) if isinstance(bad, str) else comm.send_to(bytes_data=bad))
    frame = await receive(comm, True)
    assert (frame["type"], frame["data"]) == ("error", {"message": "Invalid message format"})
    await send(comm, True, {"type": "ping"})  # the connection goes on
    assert (await receive(comm, True))["type"] == "pong"
    await comm.disconnect()


async def test_invalid_frames_in_either_encoding_get_the_same_error_then_4003(make_user, settings):
    settings.PUOMEMO_WS_INVALID_LIMIT_PER_MINUTE = 3
    user = await database_sync_to_async(make_user)()
    for msgpacked, wrong in ((True, {"text_data": '{"type": "ping"}'}), (False, {"bytes_data": b"\x81\xa4type"})):
        comm, _ = await open_ws(jwt_for(user), ["puomemo.msgpack"] if msgpacked else None)
        for _ in range(2):
            await comm.send_to(**wrong)
            frame = await receive(comm, msgpacked)
            assert (frame["type"], frame["data"]) == ("error", {"message": "Invalid message format"})
        await comm.send_to(**wrong)
        assert await close_code(comm) == 4003


async def test_an_oversize_binary_frame_closes_1009_like_a_text_one(make_user, settings):
    settings.PUOMEMO_WS_MAX_MESSAGE_BYTES = 1000
    user = await database_sync_to_async(make_user)()
    comm, _ = await open_ws(jwt_for(user), ["puomemo.msgpack"])
    await comm.send_to(bytes_data=msgpack.packb({"type": "ping", "data": {"pad": "x" * 990}}))
    assert await close_code(comm) == 1009


def write(owner, title: str) -> None:
    with transaction.atomic():
        MemoryFactory(owner=owner, title=title, visibility="team")


async def test_an_event_is_encoded_once_per_audience_and_encoding_not_per_connection(make_user, monkeypatch):
    owner = await database_sync_to_async(make_user)()
    readers = [await database_sync_to_async(make_user)() for _ in range(6)]
    encoded = []
    real_encode = rendering.encode

    def counting_encode(message_type, *args, **kwargs):
        encoded.append((message_type, kwargs.get("encoding", frames.JSON)))
        return real_encode(message_type, *args, **kwargs)

    monkeypatch.setattr(rendering, "encode", counting_encode)
    connections = []
    for i, reader in enumerate(readers):
        msgpacked = i % 2 == 0
        comm, _ = await open_ws(jwt_for(reader), ["puomemo.msgpack"] if msgpacked else None)
        await send(comm, msgpacked, {"type": "subscribe", "data": {"channels": ["memories"]}})
        assert (await receive(comm, msgpacked))["type"] == "subscribed"
        connections.append((comm, msgpacked))
    await database_sync_to_async(write)(owner, "shared")
    received = [await receive(comm, msgpacked) for comm, msgpacked in connections]
    assert {frame["type"] for frame in received} == {"memory.created"}
    assert all(frame == received[0] for frame in received)  # the same envelope, whichever the encoding
    # Six connections, one audience (team members), two encodings: two renderings.
    assert sorted(e for e in encoded if e[0] == "memory.created") == [
        ("memory.created", frames.JSON),
        ("memory.created", frames.MSGPACK),
    ]
    for comm, _ in connections:
        await comm.disconnect()


def test_a_message_is_compressed_once_for_all_connections_with_the_same_parameters():
    from realtime import daphne

    text = json.dumps({"content": " ".join(str(n * n) for n in range(3000))})
    first, size = daphne._frame(text, (15, 8))
    again, _ = daphne._frame(text, (15, 8))
    assert again is first and size == len(text.encode())  # built once; the size is the uncompressed one
    assert first[0] == 0xC1  # FIN, RSV1 (compressed), text
    header = {126: 4, 127: 10}.get(first[1], 2)
    assert len(first) - header < size / 2
    assert zlib.decompressobj(-15).decompress(first[header:] + b"\x00\x00\xff\xff") == text.encode()
    # A fan-out alternates between an event's renderings (members' and guests' frames, JSON and MessagePack)
    # in the connections' order: each is still compressed once.
    other = text.replace("content", "summary")
    compressions = []
    real = daphne._compressor
    daphne._compressor = lambda *args: compressions.append(args) or real(*args)
    try:
        frames = [daphne._frame(message, (15, 8))[0] for message in (text, other, text, other, text)]
    finally:
        daphne._compressor = real
    assert frames[0] is frames[2] is frames[4] is first and frames[1] is frames[3]
    assert len(compressions) == 1  # only `other`'s; `text` was compressed above
    binary, _ = daphne._frame(msgpack.packb({"type": "pong"}))
    assert binary[:2] == bytes((0x82, len(msgpack.packb({"type": "pong"}))))  # FIN, binary, uncompressed
