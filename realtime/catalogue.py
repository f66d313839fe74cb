"""Every frame the server sends, with the shape of its data: publish and the tests hold frames to it."""

import functools
import re
from typing import Any, NotRequired, TypedDict, get_type_hints, is_typeddict

# Applications name their own events (realtime/custom.py); each such name has the shape of CustomEvent.
CUSTOM_NAME_PATTERN = r"custom\.[a-z0-9][a-z0-9_.-]{0,63}"
_CUSTOM_NAME = re.compile(CUSTOM_NAME_PATTERN)


class MemoryPayload(TypedDict):
    id: str
    title: str
    content: str
    tags: list
    visibility: str
    version: int
    created_at: str
    updated_at: str


class MemoryCreated(TypedDict):
    memory: MemoryPayload
    user_id: str
    user_name: str


class MemoryUpdated(TypedDict):
    memory: MemoryPayload
    user_id: str
    user_name: str
    changes: dict


class MemoryRestored(TypedDict):  # back from the trash: to clients, a memory.created with its own name
    memory: MemoryPayload
    user_id: str
    user_name: str


class MemoryDeleted(TypedDict):
    memory_id: str
    title: str
    user_id: str
    user_name: str
    reason: NotRequired[str]  # "visibility": it exists, but this viewer may no longer see it


class EmbeddingComplete(TypedDict):
    memory_id: str
    embedding_model: str


class MemoryTyping(TypedDict):
    memory_id: str
    user_id: str
    user_name: str


class Presence(TypedDict):
    user_id: str
    user_name: str
    connection_id: str


class PresenceUser(TypedDict):
    user_id: str
    user_name: str
    connections: int


class PresenceList(TypedDict):
    users: list[PresenceUser]


class Channels(TypedDict):
    channels: list[str]


class Pong(TypedDict):
    timestamp: str


class Authenticated(TypedDict):
    expires_at: str | None


class Resumed(TypedDict):
    last_seq: int
    epoch: str | None


class ResyncRequired(TypedDict):
    reason: str  # "expired", "ahead", "too_many" or "epoch"
    current_seq: int
    epoch: str | None


class Error(TypedDict):
    message: str
    retry_after: NotRequired[float]


class CustomEvent(TypedDict):
    event: str
    payload: dict
    memory_id: str | None
    user_id: str
    user_name: str


class AccessChanged(TypedDict):  # between server processes only, never sent to clients
    user_id: int
    tenant_id: int | None
    role: str
    active: bool
    revoked_key_id: int | None
    ended_session: str | None


# Memory events are logged and carry `seq`; the others do not.
LOGGED = {
    "memory.created": MemoryCreated,
    "memory.updated": MemoryUpdated,
    "memory.deleted": MemoryDeleted,
    "memory.restored": MemoryRestored,
    "memory.embedding_complete": EmbeddingComplete,
}
EVENTS = {
    **LOGGED,
    "memory.typing": MemoryTyping,
    "tenant.user_joined": Presence,
    "tenant.user_left": Presence,
    "access.changed": AccessChanged,
}
REPLIES = {
    "subscribed": Channels,
    "unsubscribed": Channels,
    "pong": Pong,
    "authenticated": Authenticated,
    "presence": PresenceList,
    "resumed": Resumed,
    "resync_required": ResyncRequired,
    "error": Error,
}


class ShapeError(ValueError):
    """A frame's data is not what the catalogue declares for its type."""


def is_custom(message_type: str) -> bool:
    """Whether a type names a custom event."""
    return _CUSTOM_NAME.fullmatch(message_type) is not None


def check(message_type: str, data: Any, *, kinds: dict[str, type] | None = None) -> None:
    """Raise ShapeError unless `data` has exactly the shape declared for `message_type`."""
    kinds = kinds if kinds is not None else {**EVENTS, **REPLIES}
    if is_custom(message_type):
        _check(CustomEvent, data, message_type)
        if data["event"] != message_type:
            raise ShapeError(f"{message_type}: data.event is {data['event']!r}")
        return
    if message_type not in kinds:
        raise ShapeError(f"{message_type!r} is not in the event catalogue")
    _check(kinds[message_type], data, message_type)


def check_frame(frame: dict[str, Any]) -> None:
    """Check a whole frame as a client receives it: the envelope, `seq` and `epoch` on logged events only, its data."""
    expected = {"id", "type", "timestamp", "data"} | ({"seq", "epoch"} if frame.get("type") in LOGGED else set())
    if set(frame) != expected:
        raise ShapeError(f"{frame.get('type')!r} frame has keys {sorted(frame)}, expected {sorted(expected)}")
    if "seq" in frame and not (isinstance(frame["seq"], int) and frame["seq"] > 0):
        raise ShapeError(f"seq must be a positive integer, got {frame['seq']!r}")
    if "epoch" in frame and not (isinstance(frame["epoch"], str) and frame["epoch"]):
        raise ShapeError(f"epoch must be a non-empty string, got {frame['epoch']!r}")
    check(frame["type"], frame["data"], kinds={**LOGGED, **EVENTS, **REPLIES})


def _check(shape: Any, value: Any, where: str) -> None:
    if is_typeddict(shape):
        if not isinstance(value, dict):
            raise ShapeError(f"{where}: expected an object, got {type(value).__name__}")
        hints = _hints(shape)
        missing = shape.__required_keys__ - set(value)
        unknown = set(value) - set(hints)
        if missing or unknown:
            raise ShapeError(f"{where}: missing {sorted(missing)}, unknown {sorted(unknown)}")
        for key, item in value.items():
            _check(hints[key], item, f"{where}.{key}")
        return
    options = getattr(shape, "__args__", None) if type(shape).__name__ == "UnionType" else None
    if options:
        if not any(_fits(option, value) for option in options):
            raise ShapeError(f"{where}: {value!r} is none of {shape}")
        return
    origin = getattr(shape, "__origin__", None)
    if origin is list:
        if not isinstance(value, list):
            raise ShapeError(f"{where}: expected a list")
        for i, item in enumerate(value):
            _check(shape.__args__[0], item, f"{where}[{i}]")
        return
    if shape is float and isinstance(value, int | float) and not isinstance(value, bool):
        return
    if not isinstance(value, origin or shape) or (isinstance(value, bool) and shape is int):
        raise ShapeError(f"{where}: expected {shape}, got {value!r}")


@functools.cache
def _hints(shape: type) -> dict[str, Any]:
    # get_type_hints re-evaluates the annotations each call: a third of a publish's CPU.
    return get_type_hints(shape)


def _fits(shape: Any, value: Any) -> bool:
    if shape is type(None):
        return value is None
    try:
        _check(shape, value, "")
    except ShapeError:
        return False
    return True
