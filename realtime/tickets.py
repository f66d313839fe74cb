"""Short-lived, single-use tickets that open /ws for browsers that cannot send a bearer token."""

import hashlib
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.crypto import constant_time_compare

from accounts.principal import InvalidToken, Principal, password_stamp, principal_of_user

TICKET_PREFIX = "wst_"
# A real ticket is the prefix and 43 characters; anything much longer is not hashed or looked up.
_MAX_TICKET_LENGTH = 64


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


def _digest(ticket: str) -> str:
    # Only the digest is stored: a copy of the store (or a Redis MONITOR) does not yield usable tickets.
    return hashlib.sha256(ticket.encode()).hexdigest()


class RedisTicketStore:
    """Tickets as expiring Redis keys, redeemed with GETDEL so each works once across all processes."""

    def __init__(self, url: str) -> None:
        self.url = url
        # Synchronous: the consumer redeems on a worker thread, through database_sync_to_async.
        self.client = redis.Redis.from_url(url, **settings.REDIS_OPTIONS)

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

    url = ""

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


_store: RedisTicketStore | MemoryTicketStore | None = None
_store_lock = threading.Lock()


def ticket_store() -> RedisTicketStore | MemoryTicketStore:
    """The process's ticket store: Redis when REDIS_URL is set, this process's memory otherwise."""
    global _store
    with _store_lock:
        if _store is None or _store.url != settings.REDIS_URL:
            _store = RedisTicketStore(settings.REDIS_URL) if settings.REDIS_URL else MemoryTicketStore()
        return _store


def ticket_issue(*, principal: Principal) -> tuple[str, int]:
    """Make a ticket for the principal; return it and the seconds it stays valid. Raises RedisError."""
    ticket = TICKET_PREFIX + secrets.token_urlsafe(32)
    ttl = settings.PUOMEMO_WS_TICKET_TTL_SECONDS
    grant = TicketGrant(
        user_id=principal.user_id,
        tenant_id=principal.tenant_id,
        api_key_id=principal.api_key_id,
        expires_at=principal.expires_at.timestamp() if principal.expires_at else None,
        password_stamp=principal.password_stamp,
    )
    ticket_store().put(_digest(ticket), grant, ttl)
    return ticket, ttl


def ticket_redeem(ticket: str) -> TicketGrant | None:
    """Use up a ticket: its grant the first time within its TTL, None ever after, or if unknown. Raises RedisError."""
    if not ticket.startswith(TICKET_PREFIX) or len(ticket) > _MAX_TICKET_LENGTH:
        return None
    return ticket_store().take(_digest(ticket))


def principal_from_ticket(ticket: str) -> Principal:
    """Redeem a ticket for the principal its user has now, or raise InvalidToken. Raises RedisError."""
    grant = ticket_redeem(ticket)
    if grant is None:
        raise InvalidToken("Unknown, expired or already used ticket.")
    # The user may have been deactivated, moved or given another role, and the key revoked, since the ticket was issued.
    principal = principal_of_user(grant.user_id, api_key_id=grant.api_key_id)
    if principal.tenant_id != grant.tenant_id:
        raise InvalidToken("Ticket does not belong to the user's tenant.")
    if grant.password_stamp is not None:
        # A JWT's ticket: void once the password changed, and it lives no longer than the JWT.
        user = get_user_model().objects.get(pk=grant.user_id)
        if not constant_time_compare(grant.password_stamp, password_stamp(user)):
            raise InvalidToken("The password changed since this ticket was issued.")
        principal = replace(principal, password_stamp=grant.password_stamp)
    if grant.expires_at is None:
        return principal
    return replace(principal, expires_at=datetime.fromtimestamp(grant.expires_at, tz=UTC))
