"""Connection caps counted across all server processes, and per-connection sliding windows."""

import asyncio
import bisect
import json
import math
import time
import weakref
from collections.abc import Callable

import redis.asyncio
from django.conf import settings

from realtime.redis_clients import RedisTarget, async_client, sync_client


def refresh_seconds() -> float:
    """How often each process re-stamps its connections (PUOMEMO_WS_REGISTRY_REFRESH_SECONDS)."""
    return settings.PUOMEMO_WS_REGISTRY_REFRESH_SECONDS


def entry_ttl() -> float:
    """How long an entry that is not re-stamped (its process died) still counts: three refreshes."""
    return 3 * refresh_seconds()


# KEYS: the user's, the tenant's and everyone's sorted sets, then the tenant's `who` hash.
# Expired members of the tenant's set stay, uncounted, until reap() takes them out with
# their `who` fields and tells the tenant they left.
_ACQUIRE = """
local now, expires = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 'user' end
if redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf') >= tonumber(ARGV[5]) then return 'tenant' end
for i = 1, 3 do
  redis.call('ZADD', KEYS[i], expires, ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[6])
end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[7])
redis.call('EXPIRE', KEYS[4], ARGV[6])
return 'ok'
"""

# KEYS: the tenant's sorted set and `who` hash; ARGV: now. Removes the expired members (at most
# 1000 a call) and returns each one's id and `who` value: one process gets each, once.
_REAP = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
if #expired == 0 then return {} end
local found = {}
for i, member in ipairs(expired) do
  found[#found + 1] = member
  found[#found + 1] = redis.call('HGET', KEYS[2], member) or ''
end
redis.call('ZREM', KEYS[1], unpack(expired))
redis.call('HDEL', KEYS[2], unpack(expired))
return found
"""

# KEYS: the tenant's sorted set and `who` hash; ARGV: now. The `who` values of the live connections.
_PRESENCE = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
local values = {}
for i = 1, #members, 1000 do
  local part = redis.call('HMGET', KEYS[2], unpack(members, i, math.min(i + 999, #members)))
  for j = 1, #part do values[#values + 1] = part[j] end
end
return values
"""


def _tenant_key(tenant_id: int) -> str:
    return f"puomemo:ws:tenant:{tenant_id}"


def _keys(user_id: int, tenant_id: int) -> tuple[str, str, str]:
    return f"puomemo:ws:user:{user_id}", _tenant_key(tenant_id), "puomemo:ws:all"


def _who_key(tenant_id: int) -> str:
    """The tenant's hash of connection id -> who holds it, as JSON (user names may contain any character)."""
    return f"{_tenant_key(tenant_id)}:who"


def _who(user_id: int, user_name: str) -> str:
    return json.dumps({"user_id": user_id, "user_name": user_name}, separators=(",", ":"), ensure_ascii=False)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _presence(holders: list[tuple[int, str]]) -> list[dict]:
    """One entry per user with their connection count, sorted by user name then id.

    `holders` runs in stamp order, oldest first: a user renamed between connections shows the later name.
    """
    users: dict[int, dict] = {}
    for user_id, user_name in holders:
        user = users.setdefault(user_id, {"user_id": str(user_id), "user_name": user_name, "connections": 0})
        user["user_name"] = user_name
        user["connections"] += 1
    return [users[user_id] for user_id in sorted(users, key=lambda user_id: (users[user_id]["user_name"], user_id))]


class RedisConnectionRegistry:
    """Connections as sorted-set members scored by expiry time, shared by every process."""

    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self._locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @property
    def client(self) -> redis.asyncio.Redis:
        """The running loop's client, shared with the rest of the process (realtime/redis_clients.py)."""
        return async_client(self.target)

    @property
    def lock(self) -> asyncio.Lock:
        # Orders a release after any refresh in flight, which could otherwise re-add the released entry.
        return self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())

    async def acquire(self, connection_id: str, user_id: int, tenant_id: int, user_name: str) -> str | None:
        """Count a new connection; return which cap ("user" or "tenant") refused it, or None."""
        now = time.time()
        verdict = await self.client.eval(
            _ACQUIRE,
            4,
            *_keys(user_id, tenant_id),
            _who_key(tenant_id),
            connection_id,
            now,
            now + entry_ttl(),
            settings.PUOMEMO_WS_MAX_CONNECTIONS_PER_USER,
            settings.PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT,
            math.ceil(entry_ttl()),
            _who(user_id, user_name),
        )
        verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
        return None if verdict == "ok" else verdict

    async def release(self, connection_id: str, user_id: int, tenant_id: int) -> None:
        async with self.lock, self.client.pipeline(transaction=False) as pipe:
            for key in _keys(user_id, tenant_id):
                pipe.zrem(key, connection_id)
            pipe.hdel(_who_key(tenant_id), connection_id)
            await pipe.execute()

    async def refresh(self, connections: Callable[[], list[tuple[str, int, int, str]]]) -> None:
        """Re-stamp this process's live connections, re-creating entries and keys a Redis restart lost."""
        async with self.lock:
            entries = connections()
            if not entries:
                return
            expires = time.time() + entry_ttl()
            keys = set()
            async with self.client.pipeline(transaction=False) as pipe:
                for connection_id, user_id, tenant_id, user_name in entries:
                    for key in _keys(user_id, tenant_id):
                        pipe.zadd(key, {connection_id: expires})
                        keys.add(key)
                    pipe.hset(_who_key(tenant_id), connection_id, _who(user_id, user_name))
                    keys.add(_who_key(tenant_id))
                for key in keys:
                    # The key outlives its newest entry; without this it vanished 30 s after the last acquire.
                    pipe.expire(key, math.ceil(entry_ttl()))
                await pipe.execute()

    def counts(self, user_id: int, tenant_id: int) -> dict[str, int]:
        """Live connections of the user, the tenant and everyone (sync, for the status endpoint)."""
        now = time.time()
        with sync_client(self.target).pipeline(transaction=False) as pipe:
            for key in _keys(user_id, tenant_id):
                pipe.zcount(key, now, "+inf")
            user, tenant, total = pipe.execute()
        return {"user_connections": user, "tenant_connections": tenant, "total_connections": total}

    async def reap(self, tenant_id: int) -> list[tuple[str, int, str]]:
        """Take out the tenant's connections whose process stopped re-stamping them (it died): (id, user id, name)."""
        found = await self.client.eval(_REAP, 2, _tenant_key(tenant_id), _who_key(tenant_id), time.time())
        gone = []
        for connection_id, who in zip(found[::2], found[1::2], strict=True):
            if who:  # an entry without `who` (a version before presence) cannot be named
                holder = json.loads(who)
                gone.append((_text(connection_id), holder["user_id"], holder["user_name"]))
        return gone

    async def presence(self, tenant_id: int) -> list[dict]:
        """The tenant's users with live connections on any process, and how many each holds."""
        values = await self.client.eval(_PRESENCE, 2, _tenant_key(tenant_id), _who_key(tenant_id), time.time())
        # A live entry without a `who` field (written by a version before presence) is counted, not shown.
        holders = [(who["user_id"], who["user_name"]) for who in map(json.loads, filter(None, values))]
        return _presence(holders)


class LocalConnectionRegistry:
    """The same caps for the embedded default, where one process holds every connection."""

    def __init__(self) -> None:
        self.members: dict[str, set[str]] = {}
        self.holders: dict[str, tuple[int, str, int]] = {}  # connection id -> (user id, user name, tenant id)

    async def acquire(self, connection_id: str, user_id: int, tenant_id: int, user_name: str) -> str | None:
        user_key, tenant_key, all_key = _keys(user_id, tenant_id)
        if len(self.members.get(user_key, ())) >= settings.PUOMEMO_WS_MAX_CONNECTIONS_PER_USER:
            return "user"
        if len(self.members.get(tenant_key, ())) >= settings.PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT:
            return "tenant"
        for key in (user_key, tenant_key, all_key):
            self.members.setdefault(key, set()).add(connection_id)
        self.holders[connection_id] = (user_id, user_name, tenant_id)
        return None

    async def release(self, connection_id: str, user_id: int, tenant_id: int) -> None:
        for key in _keys(user_id, tenant_id):
            self.members.get(key, set()).discard(connection_id)
        self.holders.pop(connection_id, None)

    async def refresh(self, connections: Callable[[], list[tuple[str, int, int, str]]]) -> None:
        """Nothing to do: a process that dies takes its counts with it."""

    def counts(self, user_id: int, tenant_id: int) -> dict[str, int]:
        user, tenant, total = (len(self.members.get(key, ())) for key in _keys(user_id, tenant_id))
        return {"user_connections": user, "tenant_connections": tenant, "total_connections": total}

    async def reap(self, tenant_id: int) -> list[tuple[str, int, str]]:
        """Nothing to take out: a process that dies takes every connection, and everyone to tell, with it."""
        return []

    async def presence(self, tenant_id: int) -> list[dict]:
        """The tenant's users with open connections, and how many each holds."""
        return _presence([(user_id, name) for user_id, name, tenant in self.holders.values() if tenant == tenant_id])


class SlidingWindow:
    """Counts events in the last `seconds`; one per connection, so no locking."""

    __slots__ = ("seconds", "times")

    def __init__(self, seconds: float = 60.0) -> None:
        self.seconds = seconds
        # A list, oldest first: a connection has three windows, and a deque's first block alone
        # weighs about 770 bytes where a list of a few times weighs under 100 (docs/performance.md).
        self.times: list[float] = []

    def hit(self) -> int:
        """Record an event now and return how many fall within the window."""
        now = time.monotonic()
        times = self.times
        times.append(now)
        if times[0] <= now - self.seconds:
            del times[: bisect.bisect_right(times, now - self.seconds)]
        return len(times)

    def forget_last(self) -> None:
        """Take back the last hit, for an event that was refused and so takes no room."""
        self.times.pop()

    def retry_after(self) -> float:
        """Seconds until the oldest event leaves the window."""
        return max(0.0, self.times[0] + self.seconds - time.monotonic()) if self.times else 0.0


class Throttle:
    """Lets one event a key through per interval; one per connection, so no locking."""

    __slots__ = ("last", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        """Whether an event for the key may pass now (and, if so, record it)."""
        now = time.monotonic()
        if now - self.last.get(key, -self.seconds) < self.seconds:
            return False
        if len(self.last) > 1000:  # forget old keys so a client cannot grow this without bound
            self.last = {k: t for k, t in self.last.items() if now - t < self.seconds}
        self.last[key] = now
        return True
