"""Every Redis client of a process is made here: one for sync code, one per event loop for async code, each on a
blocking pool of PUOMEMO_REDIS_POOL_SIZE connections, to the Redis that REDIS_URL or Sentinel names."""

import asyncio
import logging
import threading
import weakref
from dataclasses import dataclass

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from django.conf import settings

# What Redis being away raises: expected, counted and healed (the log, the next refresh), so it is logged in one
# line: a traceback per call made thousands of lines of an outage of a few seconds.
OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def log_failure(logger: logging.Logger, error: BaseException, message: str, *args: object) -> None:
    """Log a failed Redis call: one line when Redis is away, with the traceback for anything else."""
    if isinstance(error, OUTAGE_ERRORS):
        logger.error(message + ": %s", *args, f"{type(error).__name__}: {error}")
    else:
        logger.error(message, *args, exc_info=error)


@dataclass(frozen=True)
class RedisTarget:
    """Where the main Redis (connection registry, tickets) is: a URL, or the master Sentinel names."""

    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""

    @classmethod
    def from_settings(cls) -> "RedisTarget":
        """The main Redis the settings name; false for the embedded default."""
        sentinels = tuple((host, port) for host, port in settings.REDIS_SENTINELS)
        return cls(settings.REDIS_URL, sentinels, settings.REDIS_SENTINEL_MASTER)

    def __bool__(self) -> bool:
        return bool(self.url or self.sentinels)


# A burst of connects waits here for a free connection, up to the timeout, instead of failing at once
# (redis-py's default pool raises MaxConnectionsError when all of its connections are in use).
class _BlockingSentinelPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """Sentinel's master pool (sync) that waits for a free connection."""


class _AsyncBlockingSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool):
    """Sentinel's master pool (asyncio) that waits for a free connection."""


def _pool_options() -> dict:
    return {
        **settings.REDIS_OPTIONS,
        "max_connections": settings.PUOMEMO_REDIS_POOL_SIZE,
        "timeout": settings.PUOMEMO_REDIS_POOL_TIMEOUT_SECONDS,
    }


def _make_sync(target: RedisTarget) -> redis.Redis:
    # Sync calls run on the HTTP handler's few threads (puomemo/http_handler.py): a stalled Redis must cost a
    # request a second or two and a 503, not the 5 s socket timeout twice over while every other request waits.
    options = {**_pool_options(), "socket_timeout": settings.PUOMEMO_REDIS_REQUEST_TIMEOUT_SECONDS}
    if target.sentinels:
        sentinel = redis.sentinel.Sentinel(target.sentinels, sentinel_kwargs=settings.REDIS_SENTINEL_OPTIONS)
        return sentinel.master_for(target.master, connection_pool_class=_BlockingSentinelPool, **options)
    return redis.Redis.from_pool(redis.BlockingConnectionPool.from_url(target.url, **options))


def _make_async(target: RedisTarget) -> redis.asyncio.Redis:
    if target.sentinels:
        sentinel = redis.asyncio.sentinel.Sentinel(target.sentinels, sentinel_kwargs=settings.REDIS_SENTINEL_OPTIONS)
        return sentinel.master_for(target.master, connection_pool_class=_AsyncBlockingSentinelPool, **_pool_options())
    return redis.asyncio.Redis.from_pool(redis.asyncio.BlockingConnectionPool.from_url(target.url, **_pool_options()))


_lock = threading.Lock()
_sync_clients: dict[tuple, redis.Redis] = {}
# An asyncio client belongs to the event loop it was made in.
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, redis.asyncio.Redis]] = (
    weakref.WeakKeyDictionary()
)


def _key(target: RedisTarget) -> tuple:
    # The pool's settings too: a client made before they changed (a test's override) is not handed out.
    return (
        target,
        settings.PUOMEMO_REDIS_POOL_SIZE,
        settings.PUOMEMO_REDIS_POOL_TIMEOUT_SECONDS,
        settings.PUOMEMO_REDIS_REQUEST_TIMEOUT_SECONDS,
    )


def sync_client(target: RedisTarget) -> redis.Redis:
    """This process's client of `target` for sync code (thread-safe: threads share its pool)."""
    key = _key(target)
    with _lock:
        if key not in _sync_clients:
            _sync_clients[key] = _make_sync(target)
        return _sync_clients[key]


def async_client(target: RedisTarget) -> redis.asyncio.Redis:
    """The running event loop's client of `target`."""
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    key = _key(target)
    if key not in clients:
        clients[key] = _make_async(target)
    return clients[key]


async def aclose_loop_clients() -> None:
    """Close the running event loop's clients (a test's loop ends; the next use makes new ones)."""
    for client in _async_clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()
