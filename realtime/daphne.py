"""Two fixes to daphne's WebSocket protocol: RFC 6455 close codes, and a bound on what a non-reading client buffers."""

import logging

from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings

logger = logging.getLogger(__name__)

# autobahn's sendClose accepts only 1000 and 3000-4999 from applications, so
# daphne turns a close with 1009 into an exception and a 1011. These codes are
# valid on the wire; send them with the lower-level call.
PROTOCOL_CLOSE_CODES = frozenset({1001, 1008, 1009, 1011, 1013})

_original_server_send = WebSocketProtocol.serverSend


def unsent_bytes(transport) -> int:
    """Bytes waiting in a Twisted TCP transport's send buffer (its FileDescriptor buffers)."""
    # Twisted's producer API would say "full" without a number, and daphne's
    # HTTPChannel already holds the transport's one producer slot.
    buffered = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
    return buffered + getattr(transport, "_tempDataLen", 0)


def _server_close(self, code=None):
    if code in PROTOCOL_CLOSE_CODES:
        self.sendCloseFrame(code=code)
    else:
        self.sendClose(code=1000 if code is None else code)


def _server_send(self, content, binary=False):
    # daphne's send() never blocks, so a client that stops reading would grow
    # the server's buffer without bound: past the limit, drop the connection.
    waiting = unsent_bytes(self.transport)
    if waiting > settings.PUOMEMO_WS_MAX_BUFFERED_BYTES:
        logger.warning("Dropping a WebSocket client that stopped reading (%d bytes waiting)", waiting)
        self.transport.abortConnection()
        return
    _original_server_send(self, content, binary)


def install() -> None:
    """Patch daphne's WebSocketProtocol (idempotent)."""
    WebSocketProtocol.serverClose = _server_close
    WebSocketProtocol.serverSend = _server_send
