"""Real server processes for the live tests: `manage.py serve` (daphne) on a fresh database and Redis."""

import asyncio
import base64
import http.cookiejar
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
import websockets
import websockets.asyncio.connection
from websockets.protocol import Side

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def long_log(env: dict, username: str, *, events: int, content_bytes: int) -> int:
    """Give the user's tenant `events` logged copies of one public memory's creation (a long replay); its first seq."""
    code = (
        "from django.db import transaction; from django.db.models import F\n"
        "from django.contrib.auth.models import User; from memories.models import Memory\n"
        "from realtime.models import Event, TenantSequence\n"
        f"u = User.objects.get(username={username!r}); t = u.membership.tenant\n"
        "with transaction.atomic():\n"
        f"    Memory.objects.create(owner=u, tenant=t, title='long', content='x' * {content_bytes},\n"
        "        visibility='public')\n"
        "    e = Event.objects.filter(tenant=t).latest('seq')\n"
        "    Event.objects.bulk_create([Event(tenant=t, seq=e.seq + i, type=e.type, memory_id=e.memory_id,\n"
        f"        data=e.data, audience=e.audience) for i in range(1, {events})])\n"
        f"    TenantSequence.objects.filter(tenant=t).update(last_seq=F('last_seq') + {events - 1})\n"
        "print(e.seq)"
    )
    return int(manage(env, "shell", "-c", code).strip().splitlines()[-1])


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

    def stop(self) -> bool:
        """SIGTERM, as a deployment stops it; False if it had to be killed, still draining after DRAIN_BOUND_SECONDS."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(DRAIN_BOUND_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return False
        return True


# Longer than a draining serve can take (its requests' 10 s, the idle keep-alive wait, the 1012 flush): a server
# still running after this is stuck, not slow.
DRAIN_BOUND_SECONDS = 30


def start_server(env: dict, log: Path, args: tuple[str, ...] = (), port: int | None = None) -> Server:
    """Start `manage.py serve` (with extra `args`; one process unless they say --workers) on `port` (by default a
    free one) and wait until it answers HTTP."""
    port = port or free_port()
    args = args if "--workers" in args else (*args, "--workers", "1")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("a"),
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

    def __init__(self, directory: Path, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.directory = directory
        self.args = args  # more of redis-server's options, e.g. ("--replicaof", "127.0.0.1", "6380")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("The live tests need redis-server on PATH (Debian: apt-get install redis-server).")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *self.args],
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

    def kill(self) -> None:
        """SIGKILL: it goes at once, as a crashed host's Redis does."""
        self.process.kill()
        self.process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.5, decode_responses=True)


class SentinelGroup:
    """A Redis primary, a replica and three sentinels watching them, on loopback, with short failover timeouts."""

    MASTER = "puomemo"

    def __init__(self, directory: Path, *, down_after_ms: int = 1000, failover_timeout_ms: int = 3000) -> None:
        self.directory = directory
        self.primary = RedisServer(directory)
        self.replica = RedisServer(directory, ("--replicaof", "127.0.0.1", str(self.primary.port)))
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms
        self.sentinels: list[subprocess.Popen] = []

    @property
    def setting(self) -> str:
        """REDIS_SENTINELS for the servers."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def start(self) -> None:
        """Start the primary and replica, then the sentinels; return once all three agree and see the replica."""
        self.primary.start()
        self.replica.start()
        binary = shutil.which("redis-server")
        for port in self.sentinel_ports:
            # A sentinel rewrites its configuration file: each gets one of its own.
            conf = self.directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.MASTER} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.MASTER} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen([binary, str(conf), "--sentinel"], cwd=self.directory, stdout=subprocess.DEVNULL)
            )
        deadline = time.monotonic() + 30
        while not self._settled():
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not find each other and the replica within 30 s")
            time.sleep(0.2)

    def _settled(self) -> bool:
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_connect_timeout=0.5, decode_responses=True) as sentinel:
                    state = sentinel.sentinel_master(self.MASTER)
            except redis.RedisError:
                return False
            if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                return False
        with self.replica.client() as replica:
            return replica.info("replication").get("master_link_status") == "up"

    def master_port(self) -> int | None:
        """The master's port as the sentinels' majority sees it (None while they disagree or cannot be asked)."""
        ports = []
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_connect_timeout=0.5) as sentinel:
                    ports.append(sentinel.sentinel_get_master_addr_by_name(self.MASTER)[1])
            except (redis.RedisError, TypeError):
                continue
        majority = [port for port in set(ports) if ports.count(port) >= 2]
        return int(majority[0]) if majority else None

    def stop(self) -> None:
        steps = [lambda process=process: (process.terminate(), process.wait(10)) for process in self.sentinels]
        _run_all([*steps, self.replica.stop, self.primary.stop])


@dataclass
class Cluster:
    """Server processes on one fresh database and (unless started without) a Redis of their own, with users and
    their API keys."""

    servers: list[Server]
    keys: dict[str, str]
    env: dict
    database: LiveDatabase
    redis: "RedisServer | None"
    tmp: Path
    extra: list[Server] = field(default_factory=list)

    def start_server(self, name: str, args: tuple[str, ...] = ("--no-worker",), env: dict | None = None) -> Server:
        """Another server on the cluster's database and Redis (or `env`), stopped with the cluster."""
        server = start_server(env or self.env, self.tmp / f"{name}.log", args)
        self.extra.append(server)
        return server

    def stop(self) -> None:
        """Stop everything that was started, even when one step fails, then raise the first failure."""
        steps = [server.stop for server in [*self.extra, *self.servers]]
        steps += [self.redis.stop] if self.redis else []
        _run_all([*steps, self.database.drop])


def _run_all(steps) -> None:
    errors = []
    for step in steps:
        try:
            step()
        except Exception as error:  # the other steps must run; the first error is raised below
            errors.append(error)
    if errors:
        raise errors[0]


def start_cluster(
    tmp: Path,
    *,
    users: dict[str, tuple[str, str]] | None = None,
    settings: dict[str, str] | None = None,
    count: int = 2,
    args: tuple[str, ...] = ("--no-worker",),
    redis: bool = True,
) -> Cluster:
    """Start a Redis (unless `redis` is false: the embedded default), migrate a fresh database, create `users`
    ({name: (tenant, role)}) with API keys, and start `count` servers (with `args`; by default without the
    embeddings worker). `settings` are environment variables of every process (DEBUG=1 unless they say otherwise).
    Whatever was started is stopped again if a later step fails."""
    redis_server = RedisServer(tmp) if redis else None
    database = None
    servers: list[Server] = []
    try:
        if redis_server:
            redis_server.start()
        database = LiveDatabase(tmp)
        env = {**os.environ, "DEBUG": "1", "DATABASE_URL": database.url, **(settings or {})}
        if redis_server:
            env["REDIS_URL"] = redis_server.url
        else:
            env.pop("REDIS_URL", None)
        manage(env, "migrate", "--noinput")
        keys = _create_users(env, users) if users else {}
        for i in range(count):
            servers.append(start_server(env, tmp / f"server-{i}.log", args))
    except BaseException:
        _run_all(
            [server.stop for server in servers]
            + ([redis_server.stop] if redis_server else [])
            + ([database.drop] if database else [])
        )
        raise
    return Cluster(servers, keys, env, database, redis_server, tmp)


def _create_users(env: dict, users: dict[str, tuple[str, str]]) -> dict[str, str]:
    # One process for all of them: a management command each would start Django a dozen times.
    script = (
        "import json; from accounts.models import Tenant; from accounts.services import api_key_create, user_create\n"
        f"users = {users!r}\nkeys = {{}}\n"
        "for name, (slug, role) in users.items():\n"
        "    tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={'name': slug})\n"
        "    user = user_create(username=name, tenant=tenant, role=role, password='pw-live-123')\n"
        "    keys[name] = api_key_create(user=user, name=name)[1]\n"
        "print(json.dumps(keys))"
    )
    return json.loads(manage(env, "shell", "-c", script).strip().splitlines()[-1])


class ClusterFactory:
    """Starts clusters (start_cluster) in directories of their own and stops every one, and whatever else was
    handed to `defer`, in reverse order; the `cluster_factory` fixture (tests/conftest.py) stops them at the end of
    the module."""

    def __init__(self, tmp_path_factory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.stops: list = []

    def __call__(self, name: str, **options) -> Cluster:
        cluster = start_cluster(self.tmp_path_factory.mktemp(name), **options)
        self.stops.append(cluster.stop)
        return cluster

    def defer(self, stop) -> None:
        """Call `stop` when the clusters stop (before those started earlier)."""
        self.stops.append(stop)

    def stop_all(self) -> None:
        stops, self.stops = self.stops[::-1], []
        _run_all(stops)


# --- Talking to the servers ---------------------------------------------------


def api(server, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{server.http}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


async def close_code(ws) -> int:
    """Read until the server closes; return its close code (1006 when the TCP connection just dropped)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006


async def ready(url: str, token: str):
    """Connect and wait until the server has set the connection up (it authenticates after the handshake)."""
    ws = await websockets.connect(f"{url}?token={token}", max_size=None)
    await ws.send('{"type": "ping"}')
    assert json.loads(await ws.recv())["type"] == "pong"
    return ws


async def subscribed(url: str, token: str):
    ws = await ready(url, token)
    await ws.send(json.dumps({"type": "subscribe", "data": {"channels": ["memories"]}}))
    assert json.loads(await ws.recv())["type"] == "subscribed"
    return ws


async def next_of_type(ws, message_type: str) -> dict:
    """The next frame of a type (or, ending in ".", of a family), pinging every second against idle timeouts."""
    while True:
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 1))
        except TimeoutError:
            await ws.send('{"type": "ping"}')
            continue
        if frame["type"] == message_type or (message_type.endswith(".") and frame["type"].startswith(message_type)):
            return frame


def raw_websocket(port: int, token: str, *, receive_buffer: int | None = None) -> tuple[socket.socket, bytes]:
    """A hand-made WebSocket client socket (to control reading); returns it and any bytes after the handshake."""
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(4096)
    assert received.startswith(b"HTTP/1.1 101"), received
    return sock, received.split(b"\r\n\r\n", 1)[1]


def masked_text_frame(text: str) -> bytes:
    """A client text frame (clients must mask), for payloads under 126 bytes."""
    payload, mask = text.encode(), os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status").read().splitlines():  # noqa: SIM115
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# --- nginx in front of the servers --------------------------------------------

NGINX = "/usr/sbin/nginx"


def render_nginx_conf(upstreams: list[int], port: int, access_log: Path) -> str:
    """docker/nginx.conf with only its addresses changed: upstreams on loopback, a listen port, a log file."""
    text = (ROOT / "docker" / "nginx.conf").read_text()
    servers = re.findall(r"^ *server web\d+:8000(.*);$", text, flags=re.MULTILINE)
    assert servers, "docker/nginx.conf names no web upstreams"
    options = servers[0]
    text = re.sub(r"^ *server web\d+:8000.*;\n", "", text, flags=re.MULTILINE)
    lines = "".join(f"    server 127.0.0.1:{upstream}{options};\n" for upstream in upstreams)
    text, found = re.subn(r"(upstream puomemo \{\n)", lambda m: m.group(1) + lines, text)
    assert found == 1
    text, found = re.subn(r"listen 8000;", f"listen 127.0.0.1:{port};", text)
    assert found == 1
    text, found = re.subn(r"access_log /dev/stdout ", f"access_log {access_log} ", text)
    assert found == 1
    text, found = re.subn(r"error_log /dev/stderr ", f"error_log {access_log.parent / 'error.log'} ", text)
    assert found == 1
    return text


@dataclass
class Nginx:
    port: int
    process: subprocess.Popen
    directory: Path
    access_log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # nginx's fast shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_nginx(upstreams: list[int], *, connections: int = 512) -> Nginx:
    """Debian's nginx in the foreground, unprivileged, on a free port, running docker/nginx.conf; each WebSocket
    takes two of its worker's `connections` (the client's and the upstream's)."""
    # A directory of its own outside pytest's (0700) tmp, so that an unprivileged nginx may write there.
    directory = Path(tempfile.mkdtemp(prefix="puomemo-nginx-"))
    port = free_port()
    access_log = directory / "access.log"
    (directory / "puomemo.conf").write_text(render_nginx_conf(upstreams, port, access_log))
    temp = "".join(
        f"{name}_temp_path {directory / name};\n" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (directory / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {directory / 'nginx.pid'};\nerror_log {directory / 'error.log'};\n"
        f"events {{ worker_connections {connections}; }}\nhttp {{\n{temp}include {directory / 'puomemo.conf'};\n}}\n"
    )
    user = {}
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in [directory, *directory.iterdir()]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        user = {"user": nobody.pw_uid, "group": nobody.pw_gid}
    process = subprocess.Popen(
        [NGINX, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-e", str(directory / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        **user,
    )
    nginx = Nginx(port, process, directory, access_log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited early:\n{(directory / 'error.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return nginx
        except OSError:
            time.sleep(0.1)
    nginx.stop()
    raise RuntimeError("nginx did not start")


def metric(server, name: str) -> float:
    """One sample of a server's /metrics, 0 when absent."""
    with urllib.request.urlopen(f"{server.http}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


class CookieClient:
    """Cookies and forms without a browser: log in and out through the pages, open /ws with the cookie."""

    def __init__(self, server) -> None:
        self.server = server
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.jar if c.name == name)

    def post_form(self, path: str, fields: dict) -> str:
        page = self.opener.open(f"{self.server.http}/login/", timeout=10).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token}).encode()
        # As a browser posts a form: with its Origin, which Django's CSRF check compares with the Host.
        request = urllib.request.Request(f"{self.server.http}{path}", data=body, headers={"Origin": self.server.http})
        with self.opener.open(request, timeout=10) as response:
            return response.geturl()

    def login(self, username: str) -> "CookieClient":
        assert self.post_form("/login/", {"username": username, "password": "pw-live-123"}).endswith("/")
        return self

    def logout(self) -> None:
        assert "/login/" in self.post_form("/logout/", {})

    async def socket(self, origin: str | None):
        """/ws with the session cookie and no token, as the page opens it."""
        headers = {"Cookie": f"sessionid={self.cookie('sessionid')}"}
        return await websockets.connect(self.server.ws, origin=origin, additional_headers=headers)


# --- Memory of a server process --------------------------------------------------

MIB = 1_048_576


def settled_rss(pid: int, *, quiet_for: float = 2.0, limit: float = 30.0) -> int:
    """RSS once it stopped moving (by under 1 MiB for `quiet_for` seconds): the model loads on a thread at start."""
    deadline = time.monotonic() + limit
    last, since = rss_bytes(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = rss_bytes(pid)
        if abs(now - last) >= MIB:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_for:
            return now
    raise AssertionError("the server's RSS did not settle")


def peak_rss_reset(pid: int) -> None:
    """Reset the process's peak RSS (VmHWM) to its current RSS."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def peak_rss(pid: int) -> int:
    for line in open(f"/proc/{pid}/status").read().splitlines():  # noqa: SIM115
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def from_puomemo(connection: websockets.asyncio.connection.Connection) -> bool:
    """Whether a connection is a client's of a real PUO Memo server (daphne), not of a test's scripted server."""
    # The client tests' scripted websockets servers send malformed binary frames on purpose.
    return connection.protocol.side == Side.CLIENT and connection.response.headers.get("Server") == "daphne"
