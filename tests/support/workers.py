"""pytest-xdist workers: which one this is, and a Redis database and channel-layer prefix of its own, so that workers
never meet each other's keys or events (each worker's test database numbers its tenants and users alike)."""

import os
from urllib.parse import urlsplit, urlunsplit

# Redis has 16 databases (0-15): the fast tier's REDIS_URL database plus the worker's number, and the
# presence-registry tests' 13 minus it, must not meet.
MAX_WORKERS = 6


def worker_number() -> int:
    """0 for gw0 or a run without xdist, 1 for gw1, …"""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    number = int(worker[2:]) if worker.startswith("gw") else 0
    assert number < MAX_WORKERS, f"at most {MAX_WORKERS} xdist workers: they share one Redis's 16 databases"
    return number


def with_db(url: str, db: int) -> str:
    """The Redis URL with another database number."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def worker_layer_prefix() -> str:
    """The channel layer's prefix for this worker: Redis pub/sub channels are not per database."""
    return f"asgi-gw{worker_number()}"


def worker_redis_url(url: str) -> str:
    """REDIS_URL for this worker: its database number plus the worker's."""
    if not url:
        return url
    base = int(urlsplit(url).path.lstrip("/") or 0)
    return with_db(url, base + worker_number())


def scratch_redis_url() -> str:
    """A Redis database tests may flush: REDIS_URL's server (else 127.0.0.1:6379), database 13 minus the worker's
    number, so that the fast tier's databases (REDIS_URL's plus the worker's) are never touched."""
    parts = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    return f"redis://{parts.hostname or '127.0.0.1'}:{parts.port or 6379}/{13 - worker_number()}"
