"""Answer requests Twisted refuses itself in JSON: 431 (414) over its header limits, 400 when it cannot parse."""

import json
import logging

from twisted.web.http import HTTPChannel

logger = logging.getLogger(__name__)

# How long the server keeps reading (and discarding) the rest of a refused
# request, so the client is still listening when its answer arrives: closing a
# socket with unread bytes makes the kernel reset the connection, and the
# client often loses the answer with it.
LINGER_SECONDS = 5

_original_line_received = HTTPChannel.lineReceived


def _refuse(channel: HTTPChannel, status: int, reason: str) -> None:
    """Write a JSON error, stop parsing, half-close, and drop the connection after LINGER_SECONDS."""
    limit = channel.totalHeadersSize
    # Twisted never hands such a request to daphne, so its access log would not show it.
    logger.warning(
        "Refused a request from %s: %d %s", getattr(channel.transport.getPeer(), "host", "?"), status, reason
    )
    body = json.dumps({"detail": f"{reason}: the request line and headers are limited to {limit} bytes."}).encode()
    channel.transport.write(
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (status, reason.encode(), len(body), body)
    )
    channel.dataReceived = lambda data: None
    channel._networkProducer.unregisterProducer()
    channel.transport.loseWriteConnection()
    channel.setTimeout(LINGER_SECONDS)  # HTTPChannel.timeoutConnection then closes it


def _line_length_exceeded(self, line):
    # Twisted's LineReceiver just drops the connection when a line passes
    # MAX_LENGTH (16 KiB): the client gets no answer at all.
    if getattr(self, "_HTTPChannel__first_line", 0):
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
    body = b'{"detail": "Bad Request: the request line, headers or multipart body could not be parsed."}'
    self.transport.write(
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (len(body), body)
    )
    self.loseConnection()


def install() -> None:
    """Patch Twisted's HTTPChannel, which daphne serves HTTP with (idempotent)."""
    HTTPChannel.lineLengthExceeded = _line_length_exceeded
    HTTPChannel.lineReceived = _line_received
    HTTPChannel._respondToBadRequestAndDisconnect = _respond_to_bad_request
