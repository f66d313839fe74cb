"""The wire envelope `{id, type, timestamp, data}` in both directions."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any


class InvalidFrame(ValueError):
    """A client frame that is not a JSON object with a string `type`."""


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
) -> str:
    """Render a server frame as JSON text; memory events carry their sequence number as `seq`."""
    frame = {"id": message_id or new_id(), "type": message_type, "timestamp": timestamp or now_iso(), "data": data}
    if seq is not None:
        frame["seq"] = seq
    return json.dumps(frame, separators=(",", ":"), default=str)


def decode(text: str) -> tuple[str, Any]:
    """Parse a client frame into (type, data); `id` and `timestamp` are optional."""
    try:
        frame = json.loads(text)
    except (ValueError, TypeError, RecursionError):  # RecursionError: JSON nested too deeply
        raise InvalidFrame("Invalid message format") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise InvalidFrame("Invalid message format")
    return frame["type"], frame.get("data")
