"""The /ws protocol's names: channels, close codes, and the channel-layer names the server processes share."""

from enum import IntEnum

MEMORIES = "memories"
TENANT_UPDATES = "tenant.updates"
CUSTOM = "custom"
CHANNELS = (MEMORIES, TENANT_UPDATES, CUSTOM)

# The longest epoch a resume (over /ws or GET /events) may name: ours (realtime.models.new_epoch and the
# counter table's file node) are far shorter.
MAX_EPOCH_LENGTH = 100

# The channel-layer message type that each process's fan-out reads.
LAYER_MESSAGE_TYPE = "tenant.event"
# An event for the server processes, not for clients: a user's access changed.
ACCESS_CHANGED = "access.changed"


class CloseCode(IntEnum):
    """Why the server closed a connection (docs/protocol.md, "Close codes"); clients act on the code."""

    MESSAGE_TOO_BIG = 1009
    SERVER_ERROR = 1011
    SERVICE_RESTART = 1012
    SLOW_CONSUMER = 1013
    # The same code: try again later. Redis could not be reached (down, failing over, pool busy), or the instance
    # is admitting as many new connections as it may at once (the admission bound).
    TRY_AGAIN_LATER = 1013
    AUTH_FAILED = 4001
    RATE_LIMITED = 4002
    INVALID_FORMAT = 4003
    IDLE_TIMEOUT = 4008
    TOO_MANY_CONNECTIONS = 4029


# What a client does on each close (both clients and docs/protocol.md say the same; a test holds them to it):
# stop for good on these, since the same connection would fail again...
STOP_CODES = frozenset({CloseCode.AUTH_FAILED, CloseCode.INVALID_FORMAT, CloseCode.MESSAGE_TOO_BIG})
# ...back off on these even after a connection that got subscribed...
BACKOFF_CODES = frozenset({CloseCode.RATE_LIMITED, CloseCode.TOO_MANY_CONNECTIONS})
# ...reconnect at once (after a random wait of up to a second, so that a restart is no storm) on these...
RESTART_CODES = frozenset({CloseCode.SERVICE_RESTART})
# ...and with the usual backoff on every other code.


def tenant_group(tenant_id: int) -> str:
    """The channel-layer group of a tenant (ASCII letters, digits and periods only)."""
    return f"puomemo.tenant.{tenant_id}"
