"""The wire envelope `{id, type, timestamp, data}` in both directions, as JSON text or MessagePack bytes."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import msgpack

# The encodings a connection may choose by WebSocket subprotocol (docs/protocol.md, "Encodings and compression").
JSON = "json"
MSGPACK = "msgpack"
SUBPROTOCOLS = {"puomemo.json": JSON, "puomemo.msgpack": MSGPACK}


class InvalidFrame(ValueError):
    """A client frame that is not a JSON object (or MessagePack map) with a string `type`."""


def iso(moment: datetime) -> str:
    """A time as ISO 8601 UTC with a Z, as the REST API writes it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now_iso() -> str:
    return iso(datetime.now(UTC))


def new_id() -> str:
    return str(uuid.uuid4())


def encode(
    message_type: str,
    data: Any = None,
    *,
    message_id: str | None = None,
    timestamp: str | None = None,
    seq: int | None = None,
    epoch: str | None = None,
    encoding: str = JSON,
) -> str | bytes:
    """Render a server frame as JSON text (or MessagePack bytes); memory events carry their `seq` and `epoch`."""
    frame = {"id": message_id or new_id(), "type": message_type, "timestamp": timestamp or now_iso(), "data": data}
    if seq is not None:
        frame["seq"] = seq
        if epoch is not None:
            frame["epoch"] = epoch
    if encoding == MSGPACK:
        return msgpack.packb(frame, default=str)
    return json.dumps(frame, separators=(",", ":"), default=str)


def decode(message: str | bytes, encoding: str = JSON) -> tuple[str, Any]:
    """Parse a client frame into (type, data); `id` and `timestamp` are optional.

    A JSON connection takes text frames only, a MessagePack one binary frames only.
    """
    try:
        if encoding == MSGPACK:
            if not isinstance(message, bytes):
                raise TypeError("a text frame on a MessagePack connection")
            frame = msgpack.unpackb(message)
        else:
            if not isinstance(message, str):
                raise TypeError("a binary frame on a JSON connection")
            frame = json.loads(message)
    # RecursionError: JSON nested too deeply; msgpack's errors are ValueErrors (StackError: nested too deeply).
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException):
        raise InvalidFrame("Invalid message format") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise InvalidFrame("Invalid message format")
    return frame["type"], frame.get("data")
