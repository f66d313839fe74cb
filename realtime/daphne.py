"""Fixes to daphne's WebSocket protocol: RFC 6455 close codes, bounds on unsent bytes, a way to see them,
permessage-deflate (RFC 7692) with shared compression, and idle connections that hold only what they use."""

import asyncio
import functools
import logging
import select
import zlib
from collections import OrderedDict

from autobahn.websocket.compress import PerMessageDeflate, PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from twisted.web.http import HTTPChannel

from puomemo import patches
from realtime.protocol import CloseCode

logger = logging.getLogger(__name__)

# autobahn's sendClose accepts only 1000 and 3000-4999 from applications, so
# daphne turns a close with 1009 into an exception and a 1011. These codes are
# valid on the wire; send them with the lower-level call.
PROTOCOL_CLOSE_CODES = frozenset(code for code in CloseCode if code < 3000)

# How long a close frame we sent waits for the client's reply before TCP is dropped. autobahn's
# 1 s is too short for a client busy compressing and sending a large message, which then sees
# 1006 instead of our 1009; meanwhile what it still sends is discarded (see _fail_connection).
CLOSE_HANDSHAKE_SECONDS = 10

_original_on_close = WebSocketProtocol.onClose
_original_factory_init = WebSocketFactory.__init__
_original_end_compress = PerMessageDeflate.end_compress_message
_original_end_decompress = PerMessageDeflate.end_decompress_message
_original_fail_connection = WebSocketProtocol._fail_connection


def unsent_bytes(transport) -> int:
    """Bytes waiting in a Twisted TCP transport's send buffer (its FileDescriptor buffers)."""
    # Twisted's producer API would say "full" without a number, and daphne's
    # HTTPChannel already holds the transport's one producer slot.
    # Private names, checked at install() (puomemo/patches.py).
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


class UnsentBytes:
    """The bytes waiting unsent in this process's WebSocket connections, summed without visiting them all per send."""

    def __init__(self) -> None:
        # Only connections last seen with bytes waiting, as of their last send: buffers
        # drain without telling us, so the total over-estimates until the next check.
        self.waiting: dict[WebSocketProtocol, int] = {}
        self.total = 0
        self.sent_since_check = 0
        self.check_pending = False

    def record(self, protocol: WebSocketProtocol, waiting: int, sent: int) -> None:
        """Note what a connection has waiting right after `sent` more bytes were queued on it."""
        self.total += waiting - self.waiting.pop(protocol, 0)
        if waiting:
            self.waiting[protocol] = waiting
        self.sent_since_check += sent

    def forget(self, protocol: WebSocketProtocol) -> None:
        """Stop counting a connection (closed or dropped)."""
        self.total -= self.waiting.pop(protocol, 0)

    def needs_check(self, waiting: int, limit: int, budget: int) -> bool:
        """Whether a connection that now has `waiting` bytes, or the total, may be over its limit."""
        # A check visits every connection with bytes waiting, so the total earns one only
        # after a sixteenth of the budget was sent since the last: what stalled clients
        # hold can pass the budget by about that much before they are dropped.
        return waiting > limit or (self.total > budget and self.sent_since_check >= budget // 16)

    def victims(self, limit: int, budget: int) -> list[tuple[WebSocketProtocol, int]]:
        """Re-measure; stalled connections over the limit, then the most-waiting ones until the rest fit the budget."""
        self.sent_since_check = 0
        for protocol in list(self.waiting):
            gone = getattr(protocol, "dropped_for_not_reading", False) or not protocol.transport.connected
            self.record(protocol, 0 if gone else unsent_bytes(protocol.transport), 0)
        stalled = _socket_full(self.waiting)
        victims = []
        for protocol, waiting in sorted(self.waiting.items(), key=lambda item: item[1], reverse=True):
            if waiting <= limit and self.total <= budget:
                break
            if protocol in stalled:
                self.forget(protocol)
                victims.append((protocol, waiting))
        return victims


def _socket_full(protocols) -> set[WebSocketProtocol]:
    """The connections whose socket takes no more bytes: their clients are not keeping up."""
    # One whose socket has room just got its bytes this turn of the reactor, which
    # writes them on its next: reading clients and stalled ones look alike until then.
    poller, by_fd = select.poll(), {}
    for protocol in protocols:
        fd = getattr(protocol.transport, "fileno", lambda: -1)()
        if fd >= 0:
            by_fd[fd] = protocol
            poller.register(fd, select.POLLOUT)
    writable = {fd for fd, events in poller.poll(0) if events & select.POLLOUT}
    return {protocol for fd, protocol in by_fd.items() if fd not in writable}


unsent = UnsentBytes()


@functools.cache
def send_limits() -> tuple[int, int, int]:
    """(per-connection unsent bytes, unsent bytes in all, compression's minimum size), from the settings."""
    # Read on every send to every connection: Django's settings object costs several times a
    # cached call per read, about 7% of a fan-out's CPU for the three (docs/performance.md).
    return (
        settings.PUOMEMO_WS_MAX_BUFFERED_BYTES,
        settings.PUOMEMO_WS_MAX_BUFFERED_BYTES_TOTAL,
        settings.PUOMEMO_WS_COMPRESSION_MIN_BYTES,
    )


@receiver(setting_changed, dispatch_uid="realtime.daphne.send_limits")
def _forget_send_limits(setting: str, **kwargs) -> None:
    if setting.startswith("PUOMEMO_WS_"):
        send_limits.cache_clear()


# How soon a connection that stays over a limit is looked at again.
RECHECK_SECONDS = 1.0


def _drop_for_not_reading(protocol: WebSocketProtocol, waiting: int) -> None:
    logger.warning(
        "Dropping a WebSocket client that stopped reading: %s (%d bytes waiting; %d in all connections)",
        protocol.client_addr,
        waiting,
        unsent.total,
    )
    protocol.dropped_for_not_reading = True
    transport = protocol.transport
    transport.abortConnection()
    # The aborted transport lives on until daphne lets go of the connection
    # (a second or so); free what it buffered now, or a burst of drops piles up.
    transport.dataBuffer, transport.offset = b"", 0
    transport._tempDataBuffer, transport._tempDataLen = [], 0


def _drop_stalled(protocol: WebSocketProtocol) -> None:
    if not getattr(protocol, "dropped_for_not_reading", False):
        unsent.forget(protocol)
        _drop_for_not_reading(protocol, unsent_bytes(protocol.transport))


def _check_unsent() -> None:
    from twisted.internet import reactor  # daphne installs the asyncio reactor first

    unsent.check_pending = False
    limit, budget, _ = send_limits()
    for protocol, waiting in unsent.victims(limit, budget):
        _drop_for_not_reading(protocol, waiting)
    # One still over a limit had room in its socket (the kernel's buffer may still be
    # growing): look again soon, since no further send may come to trigger a check.
    if unsent.total > budget or any(waiting > limit for waiting in unsent.waiting.values()):
        unsent.check_pending = True
        reactor.callLater(RECHECK_SECONDS, _check_unsent)


def _server_close(self, code=None):
    if code in PROTOCOL_CLOSE_CODES:
        self.sendCloseFrame(code=code)
    else:
        self.sendClose(code=1000 if code is None else code)


def _server_send(self, content, binary=False):
    # daphne's send() never blocks, so a client that stops reading would grow
    # the server's buffer without bound: past either limit, drop connections.
    if getattr(self, "dropped_for_not_reading", False):
        return  # its buffer went with its TCP connection; daphne tells the application soon
    before = unsent_bytes(self.transport)
    if self.state == self.STATE_CONNECTING:
        self.serverAccept()
    payload = content if binary else content.encode()
    # daphne's serverSend, but small messages go uncompressed: deflate would save a few bytes for its CPU.
    self.sendMessage(payload, binary, doNotCompress=len(payload) < send_limits()[2])
    _check_after_send(self, before)


def _check_after_send(self: WebSocketProtocol, before: int) -> None:
    after = unsent_bytes(self.transport)
    unsent.record(self, after, after - before)
    limit, budget, _ = send_limits()
    if not unsent.check_pending and unsent.needs_check(after, limit, budget):
        # After the reactor's next round of socket writes, so the check sees what the
        # clients that read took off the buffers by then.
        from twisted.internet import reactor  # daphne installs the asyncio reactor first

        unsent.check_pending = True
        reactor.callLater(0, _check_unsent)


def _on_close(self, wasClean, code, reason):
    unsent.forget(self)
    _original_on_close(self, wasClean, code, reason)


def _websocket_factory_init(self, *args, **kwargs):
    _original_factory_init(self, *args, **kwargs)
    # By default autobahn fails a connection by dropping it, so a frame over
    # daphne's cap reached the client as 1006. Failing with a close frame sends
    # 1009 as soon as the frame's header declares the size, before its payload.
    self.setProtocolOptions(failByDrop=False, closeHandshakeTimeout=CLOSE_HANDSHAKE_SECONDS)
    if settings.PUOMEMO_WS_COMPRESSION:
        self.setProtocolOptions(perMessageCompressionAccept=_accept_deflate)


def _fail_connection(self, code=1001, reason="going away"):
    # autobahn fails a connection again for each frame still over the limit after its close
    # frame went out, and that second time drops TCP with the client's bytes unread: the kernel
    # answers with a reset, and a client still sending a fragmented message loses the 1009 (it
    # sees 1006). Once our close frame is out, discard what comes until the client's close
    # reply, or autobahn's close-handshake timeout.
    if self.state == self.STATE_CLOSING and not self.failByDrop:
        return
    _original_fail_connection(self, code, reason)


def _accept_deflate(offers: list) -> PerMessageDeflateOfferAccept | None:
    """Accept the client's first permessage-deflate offer (None: no compression on this connection)."""
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            # Without context takeover each message is compressed on its own, so a fan-out
            # compresses an event once for every connection (see _frame), and a connection
            # holds no compressor (~256 KiB) between messages. The client is asked the same
            # (every client may be, RFC 7692 7.1.1.2), so that an idle connection holds no
            # decompressor (~40 KiB) either: both are made per message and freed after it.
            if settings.PUOMEMO_WS_COMPRESSION_NO_CONTEXT_TAKEOVER:
                return _DeflateAccept(offer, no_context_takeover=True, request_no_context_takeover=True)
            return _DeflateAccept(offer)
    return None


class _DeflateAccept(PerMessageDeflateOfferAccept):
    """autobahn's acceptance, which also tells the client when the server does without context takeover."""

    def get_extension_string(self) -> str:
        text = super().get_extension_string()
        if self.no_context_takeover and "server_no_context_takeover" not in text:
            text += "; server_no_context_takeover"  # RFC 7692 7.1.1.1: a server may declare it unasked
        return text


def _compressor(window_bits: int, mem_level: int):
    return zlib.compressobj(settings.PUOMEMO_WS_COMPRESSION_LEVEL, zlib.DEFLATED, -window_bits, mem_level)


def _start_compress_message(self: PerMessageDeflate) -> None:
    # autobahn's, with the configured level rather than zlib's default.
    if self._is_server:
        if self._compressor is None or self.server_no_context_takeover:
            self._compressor = _compressor(self.server_max_window_bits, self.mem_level)
    elif self._compressor is None or self.client_no_context_takeover:
        self._compressor = _compressor(self.client_max_window_bits, self.mem_level)


def _end_compress_message(self: PerMessageDeflate) -> bytes:
    data = _original_end_compress(self)
    if self._is_server and self.server_no_context_takeover:
        self._compressor = None  # the next message makes a fresh one: do not hold it meanwhile
    return data


def _end_decompress_message(self: PerMessageDeflate) -> None:
    _original_end_decompress(self)
    if self._is_server and self.client_no_context_takeover:
        self._decompressor = None  # the next message makes a fresh one: do not hold it meanwhile


# The scope key under which a WebSocket application finds its connection (a Connection, below): what it
# calls to send a frame at once, to see how much of what it sent waits unsent, and to drop a client that
# stopped reading.
CONNECTION = "puomemo.connection"

_original_create_application = Server.create_application


# The last few messages sent and their WebSocket frames, plain and compressed: a fan-out sends
# each of an event's renderings (one per way of seeing it and encoding) to many connections, in
# the connections' order. Keyed by the message object itself; compressed frames by the
# connection's (window bits, memory level).
_RECENT_MESSAGES = 16
_recent_frames: "OrderedDict[int, tuple[str | bytes, bytes, dict]]" = OrderedDict()


def _header(first_byte: int, size: int) -> bytes:
    """An unmasked, unfragmented frame's header (RFC 6455 5.2)."""
    if size < 126:
        return bytes((first_byte, size))
    if size < 65536:
        return bytes((first_byte, 0x7E)) + size.to_bytes(2, "big")
    return bytes((first_byte, 0x7F)) + size.to_bytes(8, "big")


def _frame(message: str | bytes, deflate: tuple[int, int] | None = None) -> tuple[bytes, int]:
    """A text (str) or binary (bytes) frame, compressed with `deflate`'s parameters if given, and its payload's size."""
    cached = _recent_frames.get(id(message))
    if cached is None or cached[0] is not message:  # the entry holds the message, so its id is not reused
        cached = _recent_frames[id(message)] = (message, message.encode() if isinstance(message, str) else message, {})
        if len(_recent_frames) > _RECENT_MESSAGES:
            _recent_frames.popitem(last=False)
    _, payload, frames = cached
    if deflate not in frames:
        first, data = (0x81 if isinstance(message, str) else 0x82), payload  # FIN + text or binary opcode
        if deflate is not None:
            compressor = _compressor(*deflate)
            data = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]  # RFC 7692 7.2.1
            first |= 0x40  # RSV1: a compressed message
        frames[deflate] = _header(first, len(data)) + data
    return frames[deflate], len(payload)


def _send_text(server: Server, protocol: WebSocketProtocol, message: str | bytes) -> None:
    # The checks of daphne's Server.handle_reply and WebSocketProtocol.handle_reply for a send.
    connection = server.connections.get(protocol)
    if connection is None or connection.get("disconnected") or protocol.state != protocol.STATE_OPEN:
        return
    if getattr(protocol, "dropped_for_not_reading", False):
        return
    frame, size = _frame(message)
    deflate = protocol._perMessageCompress
    compress = deflate is not None and size >= send_limits()[2]
    # With context takeover, only autobahn can compress: with the connection's own context.
    shared = not compress or deflate.server_no_context_takeover
    if not shared or protocol.autoFragmentSize or protocol.send_queue or 0 < protocol.maxMessagePayloadSize < size:
        protocol.serverSend(message, isinstance(message, bytes))  # what autobahn's sendMessage does differently: let it
        return
    if compress:  # each message compressed on its own: the same bytes for every connection with these parameters
        frame, size = _frame(message, (deflate.server_max_window_bits, deflate.mem_level))
    # autobahn's sendMessage would build (and compress) this frame again for each connection; write the one built.
    before = unsent_bytes(protocol.transport)
    protocol.transport.write(frame)
    _check_after_send(protocol, before)


class Connection(WebSocketProtocol):
    """daphne's WebSocket protocol, with the calls its application makes on it directly (its scope's CONNECTION)."""

    def send_text(self, message: str | bytes) -> None:
        """Send a text (str) or binary (bytes) frame now: what the ASGI send() does, without a coroutine per frame."""
        _send_text(self.server, self, message)

    def unsent_bytes(self) -> int:
        """Bytes of what was sent to this client that still wait in the server's socket buffer."""
        return unsent_bytes(self.transport)

    def drop(self) -> None:
        """Drop the client as one that stopped reading: its TCP connection is aborted and its buffers freed."""
        _drop_stalled(self)

    def onOpen(self) -> None:
        super().onOpen()
        _forget_handshake(self)

    def onFrameEnd(self):
        result = super().onFrameEnd()
        self.current_frame_masker = None  # autobahn makes one for each frame: not kept between frames (~250 bytes)
        return result


class _OpenRequest:
    """What daphne still reads of the handshake's request once the connection is open: its path, for the access log."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


# What the opening handshake leaves on a connection that nothing reads once it is open: autobahn's copies of
# the request (its bytes, status line, URI, host, path, headers, query parameters), the parsed extension
# offers and protocols, the 101 response, autobahn's transport details (for WAMP), daphne's headers, query
# string and server address (the application's scope has its own references).
_HANDSHAKE_ATTRIBUTES = (
    "http_request_data",
    "http_status_line",
    "http_request_uri",
    "http_request_host",
    "http_request_path",
    "http_headers",
    "http_request_params",
    "http_response_data",
    "websocket_extensions",
    "websocket_extensions_in_use",
    "websocket_protocols",
    "_wskey",
    "_transport_details",
    "clean_headers",
    "_raw_query_string",
    "server_addr",
)


def _forget_handshake(protocol: WebSocketProtocol) -> None:
    """Let go of what only the opening handshake needed (~4 KiB a connection, docs/performance.md)."""
    transport = protocol.transport
    if isinstance(getattr(transport, "producer", None), HTTPChannel):
        # The HTTP channel that read the upgrade request stays the TCP transport's producer, and holds that
        # request (its headers, body buffer, addresses). Its pause and resume do nothing once its request became
        # a WebSocket (that request never finishes, so it never pauses the transport): unregistering it only
        # frees it. Through TLS the producer is another object, and stays.
        transport.unregisterProducer()
    for name in _HANDSHAKE_ATTRIBUTES:
        setattr(protocol, name, None)
    protocol.request = _OpenRequest(protocol.request.path)


class _Inbox:
    """A connection's incoming ASGI messages for its one reader: asyncio.Queue's put_nowait() and get() without
    the Queue's four deques, which take ~3 KiB a connection (each allocates its first block up front)."""

    __slots__ = ("_messages", "_waiter")

    def __init__(self) -> None:
        self._messages: list[dict] = []
        self._waiter: asyncio.Future | None = None

    def put_nowait(self, message: dict) -> None:
        """Add a message; wakes the reader."""
        self._messages.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> dict:
        """The oldest message, once there is one (a cancelled wait takes none)."""
        while not self._messages:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._messages.pop(0)


def _create_application(self: Server, protocol: WebSocketProtocol, scope: dict) -> "_Inbox | asyncio.Queue | None":
    if scope.get("type") != "websocket":
        return _original_create_application(self, protocol, scope)
    # daphne's create_application, with an _Inbox for its queue; and the connection goes into daphne's own scope,
    # which is the connection's alone (a copy would cost each connection ~0.5 KiB).
    assert "application_instance" not in self.connections[protocol]
    inbox = _Inbox()
    scope.setdefault("asgi", {"version": "3.0"})
    scope[CONNECTION] = protocol
    application_instance = self.application(
        scope=scope, receive=inbox.get, send=functools.partial(self.handle_reply, protocol)
    )
    if protocol not in self.connections:
        return None
    self.connections[protocol]["application_instance"] = asyncio.ensure_future(
        application_instance, loop=asyncio.get_event_loop()
    )
    return inbox


def install() -> None:
    """Patch daphne's WebSocket protocol (idempotent); PatchError if a library no longer fits (puomemo/patches.py)."""
    patches.check(__name__)
    WebSocketProtocol.serverClose = _server_close
    WebSocketProtocol.serverSend = _server_send
    WebSocketProtocol.onClose = _on_close
    WebSocketProtocol._fail_connection = _fail_connection
    WebSocketFactory.__init__ = _websocket_factory_init
    WebSocketFactory.protocol = Connection
    PerMessageDeflate.start_compress_message = _start_compress_message
    PerMessageDeflate.end_compress_message = _end_compress_message
    PerMessageDeflate.end_decompress_message = _end_decompress_message
    Server.create_application = _create_application
