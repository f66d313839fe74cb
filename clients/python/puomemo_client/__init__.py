"""Async client for PUO Memo's real-time WebSocket, and the `python -m puomemo_client tail` CLI."""

from puomemo_client.client import (
    BACKOFF_CODES,
    CHANNELS,
    CUSTOM_EVENT,
    DEFAULT_CHANNELS,
    ENCODINGS,
    STATES,
    STOP_CODES,
    PuoMemoClient,
    PuoMemoClosedError,
    backoff_delay,
    jwt_expiry,
    refresh_delay,
)

__version__ = "1.1.0"

__all__ = [
    "BACKOFF_CODES",
    "CHANNELS",
    "CUSTOM_EVENT",
    "DEFAULT_CHANNELS",
    "ENCODINGS",
    "STATES",
    "STOP_CODES",
    "PuoMemoClient",
    "PuoMemoClosedError",
    "__version__",
    "backoff_delay",
    "jwt_expiry",
    "refresh_delay",
]
