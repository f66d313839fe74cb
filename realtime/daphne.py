"""Let the application close WebSockets with RFC 6455 codes such as 1009 under daphne."""

from daphne.ws_protocol import WebSocketProtocol

# autobahn's sendClose accepts only 1000 and 3000-4999 from applications, so
# daphne turns a close with 1009 into an exception and a 1011. These codes are
# valid on the wire; send them with the lower-level call.
PROTOCOL_CLOSE_CODES = frozenset({1001, 1008, 1009, 1011, 1013})


def _server_close(self, code=None):
    if code in PROTOCOL_CLOSE_CODES:
        self.sendCloseFrame(code=code)
    else:
        self.sendClose(code=1000 if code is None else code)


def install() -> None:
    """Patch daphne's WebSocketProtocol.serverClose (idempotent)."""
    WebSocketProtocol.serverClose = _server_close
