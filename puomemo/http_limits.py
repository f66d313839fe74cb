"""Twisted's HTTP as daphne serves it: JSON answers to what it refuses (431, 414, 400), a header deadline (408)."""

import json
import logging

from daphne.http_protocol import HTTPFactory
from django.conf import settings
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol

from puomemo import patches

logger = logging.getLogger(__name__)

# How long the server keeps reading (and discarding) the rest of a refused
# request, so the client is still listening when its answer arrives: closing a
# socket with unread bytes makes the kernel reset the connection, and the
# client often loses the answer with it.
LINGER_SECONDS = 5

_original_line_received = HTTPChannel.lineReceived


def _write_json_error(channel: HTTPChannel, status: int, reason: str, detail: str) -> None:
    """Write a whole JSON error response that closes the connection."""
    body = json.dumps({"detail": detail}).encode()
    channel.transport.write(
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (status, reason.encode(), len(body), body)
    )


def _refuse(channel: HTTPChannel, status: int, reason: str) -> None:
    """Write a JSON error, stop parsing, half-close, and drop the connection after LINGER_SECONDS."""
    limit = channel.totalHeadersSize
    # Twisted never hands such a request to daphne, so its access log would not show it.
    logger.warning(
        "Refused a request from %s: %d %s", getattr(channel.transport.getPeer(), "host", "?"), status, reason
    )
    _write_json_error(channel, status, reason, f"{reason}: the request line and headers are limited to {limit} bytes.")
    channel.dataReceived = lambda data: None
    channel._networkProducer.unregisterProducer()
    channel.transport.loseWriteConnection()
    channel.setTimeout(LINGER_SECONDS)  # HTTPChannel.timeoutConnection then closes it


def _line_length_exceeded(self, line):
    # Twisted's LineReceiver just drops the connection when a line passes
    # MAX_LENGTH (16 KiB): the client gets no answer at all.
    if self._HTTPChannel__first_line:  # a private name, checked at install() (puomemo/patches.py)
        _refuse(self, 414, "URI Too Long")
    else:
        _refuse(self, 431, "Request Header Fields Too Large")


def _line_received(self, line):
    # Twisted answers headers over totalHeadersSize in all with a bare 400.
    if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
        _refuse(self, 431, "Request Header Fields Too Large")
        return True  # stops LineReceiver from parsing the lines still buffered
    return _original_line_received(self, line)


def _respond_to_bad_request(self):
    # Twisted's own answer to a request it cannot parse (a malformed request
    # line or header, a multipart body without a boundary) is a bare 400.
    detail = "Bad Request: the request line, headers or multipart body could not be parsed."
    _write_json_error(self, 400, "Bad Request", detail)
    self.loseConnection()


class HeaderDeadlineChannel(HTTPChannel):
    """An HTTP channel that closes a connection whose request line and headers take too long to arrive."""

    # Twisted's idle timeout restarts on every byte, so a client dripping its
    # headers would hold a connection for ever (slowloris).
    _header_deadline = None
    _header_bytes_received = False

    def connectionMade(self):
        super().connectionMade()
        self._start_header_clock()

    def dataReceived(self, data):
        self._header_bytes_received = True
        super().dataReceived(data)

    def allHeadersReceived(self):
        self._stop_header_clock()
        super().allHeadersReceived()

    def requestDone(self, request):
        if self.persistent:
            # Before the parent, which may replay a pipelined request's headers at once.
            self._start_header_clock()
        super().requestDone(request)

    def connectionLost(self, reason):
        self._stop_header_clock()
        super().connectionLost(reason)

    def _start_header_clock(self) -> None:
        self._stop_header_clock()
        self._header_bytes_received = False
        self._header_deadline = self.callLater(settings.PUOMEMO_HTTP_HEADER_TIMEOUT_SECONDS, self._headers_too_slow)

    def _stop_header_clock(self) -> None:
        if self._header_deadline is not None and self._header_deadline.active():
            self._header_deadline.cancel()
        self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        # An idle connection just closes: a keep-alive client could read an
        # unasked-for 408 as the answer to its next request.
        if self._header_bytes_received:
            timeout = settings.PUOMEMO_HTTP_HEADER_TIMEOUT_SECONDS
            logger.info("Closing a connection whose request headers took over %d s", timeout)
            _write_json_error(self, 408, "Request Timeout", f"The request line and headers took over {timeout} s.")
        self.loseConnection()


def _http_channel(factory: HTTPFactory) -> _GenericHTTPChannelProtocol:
    # What Twisted's HTTPFactory.protocol builds, with our channel inside.
    return _GenericHTTPChannelProtocol(HeaderDeadlineChannel())


def install() -> None:
    """Patch Twisted's HTTPChannel and daphne's HTTP factory (idempotent); PatchError if they no longer fit."""
    patches.check(__name__)
    HTTPChannel.lineLengthExceeded = _line_length_exceeded
    HTTPChannel.lineReceived = _line_received
    HTTPChannel._respondToBadRequestAndDisconnect = _respond_to_bad_request
    HTTPFactory.protocol = _http_channel
