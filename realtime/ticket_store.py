"""Where /ws tickets wait to be redeemed: Redis, shared by every process, or this process's memory."""

import json
import threading
import time
from dataclasses import asdict, dataclass

from realtime.redis_clients import RedisTarget, sync_client


@dataclass(frozen=True)
class TicketGrant:
    """What a ticket was issued for; the principal itself is re-read from the database on redemption."""

    user_id: int
    tenant_id: int
    api_key_id: int | None = None
    # The issuing JWT's expiry (a POSIX timestamp) and password stamp: the socket must not outlive the token.
    expires_at: float | None = None
    password_stamp: str | None = None

    @classmethod
    def from_json(cls, raw: str | bytes) -> "TicketGrant":
        """Read a stored grant, ignoring fields a newer process may have added."""
        data = json.loads(raw)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


class RedisTicketStore:
    """Tickets as expiring Redis keys, redeemed with GETDEL so each works once across all processes."""

    def __init__(self, target: RedisTarget) -> None:
        # Synchronous: the consumer redeems on a worker thread, through database_sync_to_async.
        self.client = sync_client(target)

    @staticmethod
    def key(digest: str) -> str:
        return f"puomemo:ws:ticket:{digest}"

    def put(self, digest: str, grant: TicketGrant, ttl: int) -> None:
        self.client.set(self.key(digest), json.dumps(asdict(grant)), ex=ttl)

    def take(self, digest: str) -> TicketGrant | None:
        raw = self.client.getdel(self.key(digest))
        return None if raw is None else TicketGrant.from_json(raw)


class MemoryTicketStore:
    """Tickets in this process only, for the embedded default (one process, no REDIS_URL)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, TicketGrant]] = {}
        self.lock = threading.Lock()

    def _prune(self, now: float) -> None:
        # Entries are in insertion order, which is expiry order while the TTL stays the same;
        # one that outlives this (the TTL was lowered) is still refused by take() and pruned later.
        for digest, (expires_at, _) in list(self.entries.items()):
            if expires_at > now:
                break
            del self.entries[digest]

    def put(self, digest: str, grant: TicketGrant, ttl: int) -> None:
        now = time.monotonic()
        with self.lock:
            self._prune(now)
            self.entries[digest] = (now + ttl, grant)

    def take(self, digest: str) -> TicketGrant | None:
        now = time.monotonic()
        with self.lock:
            self._prune(now)
            expires_at, grant = self.entries.pop(digest, (0.0, None))
        return grant if expires_at > now else None
