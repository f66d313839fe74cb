"""Connection caps counted across all server processes, and per-connection sliding windows."""

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Callable

import redis
import redis.asyncio
from django.conf import settings

# Each process re-stamps its connections this often; an entry that is not
# re-stamped (its process died) stops counting after ENTRY_TTL seconds.
REFRESH_SECONDS = 10
ENTRY_TTL = 3 * REFRESH_SECONDS

_ACQUIRE = """
local now, expires = tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, 3 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 'user' end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 'tenant' end
for i = 1, 3 do
  redis.call('ZADD', KEYS[i], expires, ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[6])
end
return 'ok'
"""


def _keys(user_id: int, tenant_id: int) -> tuple[str, str, str]:
    return f"puomemo:ws:user:{user_id}", f"puomemo:ws:tenant:{tenant_id}", "puomemo:ws:all"


class RedisConnectionRegistry:
    """Connections as sorted-set members scored by expiry time, shared by every process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._sync = None

    @property
    def client(self) -> redis.asyncio.Redis:
        # An asyncio client belongs to the event loop it was made in.
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            self._clients[loop] = redis.asyncio.Redis.from_url(self.url, **settings.REDIS_OPTIONS)
            self._locks[loop] = asyncio.Lock()
        return self._clients[loop]

    @property
    def lock(self) -> asyncio.Lock:
        # Orders a release after any refresh in flight, which could otherwise re-add the released entry.
        self.client  # noqa: B018  (makes the loop's lock with its client)
        return self._locks[asyncio.get_running_loop()]

    async def acquire(self, connection_id: str, user_id: int, tenant_id: int) -> str | None:
        """Count a new connection; return which cap ("user" or "tenant") refused it, or None."""
        now = time.time()
        verdict = await self.client.eval(
            _ACQUIRE,
            3,
            *_keys(user_id, tenant_id),
            connection_id,
            now,
            now + ENTRY_TTL,
            settings.PUOMEMO_WS_MAX_CONNECTIONS_PER_USER,
            settings.PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT,
            ENTRY_TTL,
        )
        verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
        return None if verdict == "ok" else verdict

    async def release(self, connection_id: str, user_id: int, tenant_id: int) -> None:
        async with self.lock, self.client.pipeline(transaction=False) as pipe:
            for key in _keys(user_id, tenant_id):
                pipe.zrem(key, connection_id)
            await pipe.execute()

    async def refresh(self, connections: Callable[[], list[tuple[str, int, int]]]) -> None:
        """Re-stamp this process's live connections, re-creating entries and keys a Redis restart lost."""
        async with self.lock:
            entries = connections()
            if not entries:
                return
            expires = time.time() + ENTRY_TTL
            keys = set()
            async with self.client.pipeline(transaction=False) as pipe:
                for connection_id, user_id, tenant_id in entries:
                    for key in _keys(user_id, tenant_id):
                        pipe.zadd(key, {connection_id: expires})
                        keys.add(key)
                for key in keys:
                    # The key outlives its newest entry; without this it vanished 30 s after the last acquire.
                    pipe.expire(key, ENTRY_TTL)
                await pipe.execute()

    def counts(self, user_id: int, tenant_id: int) -> dict[str, int]:
        """Live connections of the user, the tenant and everyone (sync, for the status endpoint)."""
        if self._sync is None:
            self._sync = redis.Redis.from_url(self.url, **settings.REDIS_OPTIONS)
        now = time.time()
        with self._sync.pipeline(transaction=False) as pipe:
            for key in _keys(user_id, tenant_id):
                pipe.zcount(key, now, "+inf")
            user, tenant, total = pipe.execute()
        return {"user_connections": user, "tenant_connections": tenant, "total_connections": total}


class LocalConnectionRegistry:
    """The same caps for the embedded default, where one process holds every connection."""

    def __init__(self) -> None:
        self.members: dict[str, set[str]] = {}

    async def acquire(self, connection_id: str, user_id: int, tenant_id: int) -> str | None:
        user_key, tenant_key, all_key = _keys(user_id, tenant_id)
        if len(self.members.get(user_key, ())) >= settings.PUOMEMO_WS_MAX_CONNECTIONS_PER_USER:
            return "user"
        if len(self.members.get(tenant_key, ())) >= settings.PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT:
            return "tenant"
        for key in (user_key, tenant_key, all_key):
            self.members.setdefault(key, set()).add(connection_id)
        return None

    async def release(self, connection_id: str, user_id: int, tenant_id: int) -> None:
        for key in _keys(user_id, tenant_id):
            self.members.get(key, set()).discard(connection_id)

    async def refresh(self, connections: Callable[[], list[tuple[str, int, int]]]) -> None:
        """Nothing to do: a process that dies takes its counts with it."""

    def counts(self, user_id: int, tenant_id: int) -> dict[str, int]:
        user, tenant, total = (len(self.members.get(key, ())) for key in _keys(user_id, tenant_id))
        return {"user_connections": user, "tenant_connections": tenant, "total_connections": total}


_registry: RedisConnectionRegistry | LocalConnectionRegistry | None = None


def connection_registry() -> RedisConnectionRegistry | LocalConnectionRegistry:
    """The process's registry: in Redis when REDIS_URL is set, in memory otherwise."""
    global _registry
    if _registry is None:
        _registry = RedisConnectionRegistry(settings.REDIS_URL) if settings.REDIS_URL else LocalConnectionRegistry()
    return _registry


class SlidingWindow:
    """Counts events in the last `seconds`; one per connection, so no locking."""

    def __init__(self, seconds: float = 60.0) -> None:
        self.seconds = seconds
        self.times: deque[float] = deque()

    def hit(self) -> int:
        """Record an event now and return how many fall within the window."""
        now = time.monotonic()
        self.times.append(now)
        while self.times[0] <= now - self.seconds:
            self.times.popleft()
        return len(self.times)

    def retry_after(self) -> float:
        """Seconds until the oldest event leaves the window."""
        return max(0.0, self.times[0] + self.seconds - time.monotonic()) if self.times else 0.0
