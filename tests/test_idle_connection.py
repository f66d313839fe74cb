"""What an idle subscribed connection holds, on daphne's real objects: the HTTP upgrade, the WebSocket handshake
(with and without permessage-deflate), the ASGI application and the consumer, driven in-process through a
Twisted string transport (docs/performance.md, "Idle memory")."""

import asyncio
import base64
import json
import os
import zlib

import pytest
from channels.db import database_sync_to_async
from daphne.http_protocol import HTTPFactory
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory
from django.test import Client
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from puomemo import http_limits
from realtime import daphne
from realtime.consumers import MemoryConsumer
from realtime.routing import ProtocolRouter, websocket_application
from tests.support.auth import jwt_for

pytestmark = pytest.mark.django_db(transaction=True)


class Transport(StringTransport):
    """A TCP transport that keeps what is written, with the send buffers realtime.daphne.unsent_bytes() reads."""

    dataBuffer, offset, _tempDataLen = b"", 0, 0


def daphne_server() -> Server:
    """daphne's Server as Server.run() sets it up, without listening: its factories and connection table."""
    daphne.install()
    http_limits.install()
    application = ProtocolRouter({"websocket": websocket_application()})
    server = Server(application, endpoints=["tcp:port=0"])  # never listened on
    server.connections = {}
    server.http_factory = HTTPFactory(server)
    server.ws_factory = WebSocketFactory(server, server="Daphne")
    server.ws_factory.setProtocolOptions(autoPingTimeout=30, allowNullOrigin=True, openHandshakeTimeout=5)
    return server


def client_frame(message: dict, deflate: bool) -> bytes:
    """A masked text frame, compressed as browsers do when permessage-deflate was agreed (RFC 7692)."""
    payload, first = json.dumps(message).encode(), 0x81
    if deflate:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload, first = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4], first | 0x40
    mask = os.urandom(4)
    return bytes((first, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def frames_sent(transport: Transport, count: int) -> list[bytes]:
    """Wait until the server wrote `count` frames after the 101 response; their payloads."""
    for _ in range(500):
        data = transport.value().split(b"\r\n\r\n", 1)[-1]
        found, offset = [], 0
        while offset + 4 <= len(data):  # unmasked, uncompressed, shorter than 64 KiB (RFC 6455 5.2)
            size, start = data[offset + 1], offset + 2
            if size == 126:
                size, start = int.from_bytes(data[offset + 2 : offset + 4]), offset + 4
            found.append(data[start : start + size])
            offset = start + size
        if len(found) >= count:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"the server wrote {transport.value()!r}")


async def open_subscribed(server: Server, credential: str, deflate: bool):
    """Upgrade a new TCP connection and subscribe it to memories: (its WebSocket protocol, its transport).

    `credential` is a token, or "sessionid=<key>" for a browser page of the site (its session cookie)."""
    http = server.http_factory.buildProtocol(None)
    transport = Transport()
    http.makeConnection(transport)
    key = base64.b64encode(os.urandom(16)).decode()
    if credential.startswith("sessionid="):
        target, headers = "/ws", f"Origin: http://localhost\r\nCookie: {credential}\r\n"
    else:
        target, headers = f"/ws?token={credential}", ""
    headers += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
    http.dataReceived(
        f"GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n".encode()
    )
    protocol = transport.protocol  # daphne handed the transport to the WebSocket protocol
    for _ in range(500):  # the application accepts, then the handshake completes
        if protocol.state == protocol.STATE_OPEN:
            break
        await asyncio.sleep(0.01)
    protocol.dataReceived(client_frame({"type": "subscribe", "data": {"channels": ["memories"]}}, deflate))
    assert json.loads((await frames_sent(transport, 1))[0])["type"] == "subscribed"
    return protocol, transport


def consumer_of(task: asyncio.Task) -> MemoryConsumer:
    return task.get_coro().cr_frame.f_locals["self"]


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


@pytest.mark.parametrize(
    ("deflate", "browser"),
    [(False, False), (True, False), (True, True)],
    ids=["token", "token-permessage-deflate", "browser-session-permessage-deflate"],
)
async def test_an_idle_subscribed_connection_holds_only_what_it_uses(make_user, deflate, browser):
    user = await database_sync_to_async(make_user)()
    credential = await database_sync_to_async(session_cookie)(user) if browser else jwt_for(user)
    server = daphne_server()
    first, _ = await open_subscribed(server, credential, deflate)
    before = asyncio.all_tasks()
    protocol, transport = await open_subscribed(server, credential, deflate)
    application = server.connections[protocol]["application_instance"]

    # One task for the connection, its application's, which awaits the client's next message directly: no
    # routing or session layer's coroutine around the consumer's, no second task reading the queue.
    assert asyncio.all_tasks() - before == {application}
    assert application.get_coro().__qualname__ == "MemoryConsumer._run"
    assert application.get_coro().cr_await.__qualname__ == "_Inbox.get"
    assert set(application.get_coro().cr_frame.f_locals) == {"self", "receive"}  # not the last message
    consumer = consumer_of(application)
    assert consumer.joined and consumer.subscriptions == ("memories",)
    assert (consumer.principal.session_key is not None) == browser  # a page's socket rides its session
    assert consumer.outbox.queue is None and consumer.outbox.writer is None  # frames went straight to the socket
    assert consumer.outbox.connection is protocol
    assert consumer.scope is None  # the handshake's headers and query string went with it

    # Compression was agreed or not, and holds no zlib state between messages either way.
    compression = protocol._perMessageCompress
    if deflate:
        assert compression is not None and compression.server_no_context_takeover
        assert compression._compressor is None and compression._decompressor is None
    else:
        assert compression is None
    assert protocol.current_frame_masker is None

    # Nothing of the HTTP request and the handshake stays: the channel that read it and autobahn's copies.
    assert transport.producer is None
    for name in daphne._HANDSHAKE_ATTRIBUTES:
        assert getattr(protocol, name) is None, name
    assert protocol.request.path == "/ws"

    # Messages move the idle deadline of one timer; they do not add one each. It keeps no copy of the context
    # of the message that set it (what asgiref copied into it after a database call).
    timer = consumer.idle_timer
    assert len(timer._context) == 0
    protocol.dataReceived(client_frame({"type": "ping"}, deflate))
    assert json.loads((await frames_sent(transport, 2))[1])["type"] == "pong"
    assert consumer.idle_timer is timer and not timer.cancelled()
    assert compression is None or compression._decompressor is None

    for connection in (first, protocol):  # the client goes: the connection gives back what it held
        connection.connectionLost(Failure(ConnectionError("gone")))
        await asyncio.wait_for(server.connections[connection]["application_instance"], 5)
    assert not consumer.joined and timer.cancelled()
