"""Real server processes for the live tests: `manage.py serve` (daphne) on a fresh database and Redis."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
# The live tests flush this Redis database, so they never share one with a running instance.
LIVE_REDIS_DB = 14


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def live_redis_url() -> str:
    """REDIS_URL's server (or localhost's), on the live tests' own database number."""
    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    client = redis.Redis.from_url(base)
    kwargs = client.connection_pool.connection_kwargs
    client.close()
    return f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{LIVE_REDIS_DB}"


class LiveDatabase:
    """A database of its own for the server processes: PostgreSQL when DATABASE_URL names it, else SQLite."""

    def __init__(self, tmp_path: Path) -> None:
        base = os.environ.get("DATABASE_URL", "")
        self.admin_url = None
        if base.startswith("postgres"):
            self.name = f"puomemo_live_{uuid.uuid4().hex[:8]}"
            self.admin_url = base.rsplit("/", 1)[0] + "/postgres"
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
            self.url = base.rsplit("/", 1)[0] + "/" + self.name
        else:
            self.url = f"sqlite:///{tmp_path / 'live.sqlite3'}"

    def drop(self) -> None:
        if self.admin_url:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def manage(env: dict, *args: str) -> str:
    """Run a management command against the live database and return its output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(env: dict, log: Path, args: tuple[str, ...] = ()) -> Server:
    """Start `manage.py serve` (with extra `args`) on a free port and wait until it answers HTTP."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    server = Server(port, process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()}")
        try:
            urllib.request.urlopen(f"{server.http}/api/v4/schema/", timeout=1)
            return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def shared_test_database_url() -> str:
    """DATABASE_URL of the test database, for a process started by a test (transactional tests commit)."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class RedisServer:
    """A redis-server of the test's own, on a free port, which the test may stop and restart."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("The fault tests need redis-server on PATH (Debian: apt-get install redis-server).")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@dataclass
class Cluster:
    """Server processes on one fresh database and one Redis, with a tenant's users and their API keys."""

    servers: list[Server]
    keys: dict[str, str]
    env: dict
    database: LiveDatabase

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.database.drop()


def start_cluster(
    tmp: Path, redis_url: str, *, users: dict[str, tuple[str, str]], settings: dict[str, str], count: int = 2
) -> Cluster:
    """Migrate a fresh database, create `users` ({name: (tenant, role)}) with API keys, and start `count` servers."""
    database = LiveDatabase(tmp)
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": database.url, "REDIS_URL": redis_url, **settings}
    manage(env, "migrate", "--noinput")
    for tenant in sorted({tenant for tenant, _ in users.values()}):
        manage(env, "create_tenant", tenant)
    for name, (tenant, role) in users.items():
        manage(env, "create_user", name, "--tenant", tenant, "--role", role, "--password", "pw-live-123")
    keys = {name: manage(env, "create_api_key", name).strip().splitlines()[-1] for name in users}
    servers = [start_server(env, tmp / f"server-{i}.log", ("--no-worker",)) for i in range(count)]
    return Cluster(servers, keys, env, database)
