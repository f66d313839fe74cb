"""Scale-out for real: Debian's nginx running docker/nginx.conf in front of three `manage.py serve` processes
started with docker/compose.yaml's command, sharing PostgreSQL (or SQLite) and a Redis of the test's own."""

import asyncio
import json
import re
import signal
import time
import urllib.error
import urllib.request

import pytest
import websockets
import yaml

from realtime.limits import entry_ttl
from tests.support.live import (
    ROOT,
    CookieClient,
    api,
    close_code,
    metric,
    next_of_type,
    ready,
    start_nginx,
    subscribed,
)

pytestmark = pytest.mark.live

COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
NGINX_CONF = (ROOT / "docker" / "nginx.conf").read_text()


def serve_args() -> tuple[str, ...]:
    """The web services' `manage.py serve` options after --host and --port, as the images run them."""
    command = COMPOSE["services"]["web1"]["command"]
    assert command[:3] == ["python", "manage.py", "serve"]
    options = command[3:]
    for flag in ("--host", "--port"):
        index = options.index(flag)
        del options[index : index + 2]
    return tuple(options)


# The servers' PUOMEMO_WS_REGISTRY_REFRESH_SECONDS: an entry that is not re-stamped expires after entry_ttl(),
# three refreshes (6 s here rather than 30), so holding state past every TTL takes seconds, not minutes.
REFRESH_SECONDS = 2
USERS = {
    # The caps' tenant: two connections each for alice, bob and carol fill it.
    "alice": ("big", "admin"),
    "bob": ("big", "member"),
    "carol": ("big", "guest"),
    "erin": ("big", "member"),
    "dave": ("other", "admin"),
    # The SIGKILL test's tenant.
    "kim": ("third", "admin"),
    "lee": ("third", "member"),
    "max": ("third", "member"),
    "ned": ("third", "member"),
}
TOTAL = "puomemo_websocket_connections"


@pytest.fixture(scope="module")
def scaled(cluster_factory):
    """Three servers behind nginx, on one database and one Redis."""
    settings = {
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_USER": "2",
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT": "6",
        "PUOMEMO_WS_REGISTRY_REFRESH_SECONDS": str(REFRESH_SECONDS),
    }
    cluster = cluster_factory(
        "nginx", users=USERS, settings=settings, count=3, args=(*serve_args(), "--workers", "2")
    )  # serve's default on a 2-core host: its number of cores
    nginx = start_nginx([server.port for server in cluster.servers])
    cluster_factory.defer(nginx.stop)
    return cluster, nginx


@pytest.fixture
def ttl(settings) -> float:
    """entry_ttl() of the module's servers."""
    settings.PUOMEMO_WS_REGISTRY_REFRESH_SECONDS = REFRESH_SECONDS
    return entry_ttl()


def status(server, key: str) -> dict:
    code, body = api(server, "GET", "/api/v4/ws/status", key)
    assert code == 200, body
    return body


async def create(server, key: str, title: str, visibility: str = "team") -> dict:
    code, body = await asyncio.to_thread(
        api, server, "POST", "/api/v4/memories/", key, {"title": title, "visibility": visibility}
    )
    assert code == 201, body
    return body


async def memory_events(ws, count: int, timeout: float = 15) -> list[dict]:
    return [await asyncio.wait_for(next_of_type(ws, "memory.created"), timeout) for _ in range(count)]


async def pong(ws) -> None:
    await ws.send('{"type": "ping"}')
    assert (await asyncio.wait_for(next_of_type(ws, "pong"), 10))["type"] == "pong"


def test_compose_and_nginx_conf_are_what_this_module_runs():
    services = COMPOSE["services"]
    assert {"postgres", "redis", "web1", "web2", "worker", "nginx"} <= set(services)
    assert services["web1"]["command"] == services["web2"]["command"]
    assert services["worker"]["command"] == ["python", "manage.py", "embed_worker"]
    assert "--no-worker" in serve_args() and "--proxy-headers" in serve_args()
    for name in ("web1", "web2", "worker", "migrate"):
        environment = services[name]["environment"]
        assert environment["REDIS_URL"].startswith("redis://redis:")
        assert environment["DATABASE_URL"].startswith("postgres://") and "@postgres:" in environment["DATABASE_URL"]
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]
    # Each web service is an upstream of nginx, on the port its command serves.
    upstreams = re.findall(r"^ *server (\w+):(\d+)", NGINX_CONF, flags=re.MULTILINE)
    assert sorted(upstreams) == [("web1", "8000"), ("web2", "8000")]
    assert services["web1"]["command"][services["web1"]["command"].index("--port") + 1] == "8000"

    assert "proxy_set_header Upgrade $http_upgrade;" in NGINX_CONF
    assert "proxy_set_header Connection $connection_upgrade;" in NGINX_CONF
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in NGINX_CONF
    assert re.search(r"client_header_timeout \d+s;", NGINX_CONF)
    from django.conf import settings

    longest = max(settings.PUOMEMO_WS_HEARTBEAT_SECONDS, settings.PUOMEMO_WS_IDLE_TIMEOUT_SECONDS)
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        assert int(re.search(rf"{directive} (\d+)s;", NGINX_CONF).group(1)) > longest
    log_format = re.search(r"log_format puomemo (.*?);", NGINX_CONF, flags=re.DOTALL).group(1)
    for variable in ("$request ", "$request_uri", "$args", "$query_string", "$is_args"):
        assert variable not in log_format + " "


async def test_events_caps_and_counts_across_instances_held_past_every_ttl(scaled, ttl):
    """Also what tests/test_live_faults.py's `test_caps_and_counts_hold_past_every_ttl_on_both_instances` checked
    (merged here): the held sockets stay open, and the caps and counts hold on every instance past every TTL."""
    cluster, nginx = scaled
    keys, servers = cluster.keys, cluster.servers
    # Six connections through nginx, spread by it over the instances: the tenant's cap.
    held = {name: [await subscribed(nginx.ws, keys[name]) for _ in range(2)] for name in ("alice", "bob", "carol")}
    elsewhere = await subscribed(nginx.ws, keys["dave"])
    per_instance = [await asyncio.to_thread(metric, server, TOTAL) for server in servers]
    assert sum(per_instance) == 7 and sum(1 for n in per_instance if n) >= 2, per_instance

    async def check(round_: int) -> None:
        # Writes through nginx (round-robin over the instances) and straight to each instance.
        written = [await create(nginx, keys["bob"], f"{round_} via nginx {i}") for i in range(3)]
        written += [await create(s, keys["alice"], f"{round_} direct {i}", "public") for i, s in enumerate(servers)]
        public = [m["id"] for m in written if m["visibility"] == "public"]
        for name, sockets in held.items():
            expected = public if name == "carol" else [m["id"] for m in written]
            for ws in sockets:
                frames = await memory_events(ws, len(expected))
                assert sorted(f["data"]["memory"]["id"] for f in frames) == sorted(expected), name
                seqs = [f["seq"] for f in frames]
                if name != "carol":  # the admin and the member see every event: no gap
                    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        # The caps hold through nginx and on every instance directly.
        for url in [nginx.ws, *(s.ws for s in servers)]:
            for name in ("alice", "erin"):  # alice: her own cap; erin: the tenant's
                over = await websockets.connect(f"{url}?token={keys[name]}")
                assert await close_code(over) == 4029, (url, name)
        # The counts are the cluster's, asked of any instance.
        for server in [nginx, *servers]:
            body = await asyncio.to_thread(status, server, keys["alice"])
            assert (body["user_connections"], body["tenant_connections"], body["total_connections"]) == (2, 6, 7)

    await check(1)
    await asyncio.sleep(ttl + 2)  # past entry_ttl(): only the re-stamping keeps them counted
    await check(2)
    body = await asyncio.to_thread(status, servers[0], keys["dave"])
    assert (body["user_connections"], body["tenant_connections"]) == (1, 1)
    for ws in [*(ws for sockets in held.values() for ws in sockets), elsewhere]:
        await ws.close()
    closed_at = time.monotonic()
    # A clean close releases at once, cluster-wide: as soon as each server has handled its disconnect (the client's
    # close returns before that), well before any entry could expire. Each was stamped at most a refresh before
    # the close, so none expires in the first ttl - REFRESH_SECONDS (4 s) after it.
    while (body := await asyncio.to_thread(status, nginx, keys["alice"]))["total_connections"]:
        assert time.monotonic() - closed_at < ttl - REFRESH_SECONDS - 1, body
        await asyncio.sleep(0.1)
    assert (body["tenant_connections"], body["total_connections"]) == (0, 0)


async def test_the_web_ui_logs_in_and_rides_its_session_through_nginx(scaled):
    """nginx passes the Host with its port: Django's CSRF origin check and the /ws same-origin check both need it."""
    cluster, nginx = scaled
    browser = await asyncio.to_thread(CookieClient(nginx).login, "dave")  # a CSRF-checked form POST
    ws = await browser.socket(origin=nginx.http)
    await ws.send(json.dumps({"type": "subscribe", "data": {"channels": ["memories"]}}))
    assert (await asyncio.wait_for(next_of_type(ws, "subscribed"), 10))["type"] == "subscribed"
    memory = await create(cluster.servers[1], cluster.keys["dave"], "through nginx, by session")
    assert (await memory_events(ws, 1))[0]["data"]["memory"]["id"] == memory["id"]
    await ws.close()


def test_the_limits_a_client_meets_through_nginx_are_the_servers_own(scaled):
    cluster, nginx = scaled
    # The longest content allowed, escaped as Python's json (and most encoders) does: 1.2 MB on the wire.
    status, created = api(nginx, "POST", "/api/v4/memories/", cluster.keys["bob"], {"content": "\U0001f600" * 100_000})
    assert (status, len(created.get("content", ""))) == (201, 100_000)
    status, refused = api(nginx, "POST", "/api/v4/memories/", cluster.keys["bob"], {"content": "x" * 3_000_000})
    assert (status, refused) == (413, {"detail": "Request body is larger than the limit of 2621440 bytes."})


async def test_sigkill_of_one_instance(scaled, ttl):
    cluster, nginx = scaled
    keys, servers = cluster.keys, cluster.servers
    victim, survivors = servers[2], servers[:2]
    watcher = await subscribed(survivors[0].ws, keys["ned"])
    # Consecutive handshakes go round-robin: one of these three lands on each instance.
    through = {name: await subscribed(nginx.ws, keys[name]) for name in ("kim", "lee", "max")}
    on_victim = await asyncio.to_thread(metric, victim, TOTAL)
    assert on_victim == 1

    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    killed_at = time.monotonic()
    closed, alive = [], []
    for name, ws in through.items():
        try:
            await pong(ws)
            alive.append(name)
        except websockets.ConnectionClosed:
            closed.append(name)
    assert len(closed) == 1 and len(alive) == 2, (closed, alive)
    # Its connection still counts until its entry expires: the dead process cannot release it.
    assert (await asyncio.to_thread(status, nginx, keys["kim"]))["tenant_connections"] == 4

    # The client reconnects through nginx, which skips the dead instance, as every later handshake and write does.
    through[closed[0]] = await subscribed(nginx.ws, keys[closed[0]])
    extra = await ready(nginx.ws, keys["ned"])
    written = [await create(nginx, keys["kim"], f"after the kill {i}") for i in range(4)]
    for ws in [watcher, *through.values()]:
        frames = await memory_events(ws, len(written))
        assert [f["data"]["memory"]["id"] for f in frames] == [m["id"] for m in written]

    # Within entry_ttl() of the kill the dead connection stops counting.
    while (await asyncio.to_thread(status, nginx, keys["kim"]))["tenant_connections"] != 5:
        assert time.monotonic() - killed_at < ttl + 5
        await asyncio.sleep(1)
    for ws in [watcher, *through.values(), extra]:
        await ws.close()


async def joins(ws, until: str, seconds: float = 15) -> list[str]:
    """Names of the tenant.user_joined frames that arrive within `seconds`, stopping at `until`'s."""
    seen, deadline = [], time.monotonic() + seconds
    while until not in seen and time.monotonic() < deadline:
        try:
            seen.append((await asyncio.wait_for(next_of_type(ws, "tenant.user_joined"), 1))["data"]["user_name"])
        except TimeoutError:
            continue
    return seen


async def test_redis_restart_leaves_no_socket_deaf_and_no_gap(scaled):
    cluster, nginx = scaled
    keys, redis_server = cluster.keys, cluster.redis
    live = [s for s in cluster.servers if s.process.poll() is None]
    # alice through nginx, bob straight to one instance; both see every event of the tenant.
    sockets = {"alice": await subscribed(nginx.ws, keys["alice"]), "bob": await subscribed(live[1].ws, keys["bob"])}
    await sockets["bob"].send(json.dumps({"type": "subscribe", "data": {"channels": ["memories", "tenant.updates"]}}))
    await next_of_type(sockets["bob"], "subscribed")
    first = await create(nginx, keys["alice"], "before the outage")
    last_seq = {}
    for name, ws in sockets.items():
        last_seq[name] = (await memory_events(ws, 1))[0]["seq"]

    redis_server.stop()
    # No REST write fails because Redis is down: through nginx, and on each instance.
    written = [await create(nginx, keys["alice"], f"outage via nginx {i}") for i in range(2)]
    written += [await create(s, keys["bob"], "outage direct") for s in live]
    # Their events reach the open sockets while Redis is still down: each instance reads them from the log.
    during = {name: await memory_events(ws, len(written)) for name, ws in sockets.items()}
    redis_server.start()  # same port, empty
    written += [await create(s, keys["alice"], "after the restart") for s in [nginx, *live]]

    reconnected = []
    for name in sockets:
        ws, got = sockets[name], list(during[name])
        while len(got) < len(written):
            try:
                got += await memory_events(ws, 1, timeout=20)
            except websockets.ConnectionClosed:  # closed rather than deaf: reconnect and resume
                reconnected.append(name)
                ws = sockets[name] = await ready(nginx.ws, keys[name])
                after = got[-1]["seq"] if got else last_seq[name]
                channels = ["memories", "tenant.updates"]
                await ws.send(json.dumps({"type": "subscribe", "data": {"channels": channels, "last_seq": after}}))
        assert [f["data"]["memory"]["id"] for f in got] == [m["id"] for m in written], name
        assert [f["seq"] for f in got] == list(range(last_seq[name] + 1, last_seq[name] + 1 + len(written))), name
    assert first["id"] not in {m["id"] for m in written}

    # Events that only travel by pub/sub (presence) reach the open sockets again once each instance has
    # re-subscribed (its receive loop retries every second): they are not left deaf. A presence event sent
    # before that is lost, as presence is never logged; a connection opened then may be closed with 1013
    # (try again later), on which clients retry (docs/deployment.md says both).
    deadline, seen, refused = time.monotonic() + 15, [], []
    while "carol" not in seen:
        assert time.monotonic() < deadline, (seen, reconnected, refused)
        try:
            joined = await ready(live[0].ws, keys["carol"])
        except websockets.ConnectionClosed as closed:
            refused.append(closed.rcvd.code if closed.rcvd else 1006)
            assert refused[-1] == 1013, refused
            await asyncio.sleep(1)
            continue
        seen = await joins(sockets["bob"], "carol", seconds=2)
        if "carol" not in seen:
            await joined.close()
    for ws in [joined, *sockets.values()]:
        await ws.close()


async def test_no_token_or_ticket_reaches_nginx_logs(scaled):
    cluster, nginx = scaled
    code, body = await asyncio.to_thread(api, nginx, "POST", "/api/v4/ws/ticket", cluster.keys["erin"])
    assert code == 201
    ws = await websockets.connect(f"{nginx.ws}?ticket={body['ticket']}")
    await pong(ws)
    await ws.close()
    await asyncio.sleep(0.5)  # nginx logs a WebSocket when it ends
    # Per-process metrics are read from each instance, not through the balancer.
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(urllib.request.urlopen, f"{nginx.http}/metrics", timeout=10)
    assert refused.value.code == 404
    access, errors = nginx.access_log.read_text(), (nginx.directory / "error.log").read_text()
    # Every test of this module went through nginx by now, the SIGKILL's failed upstreams included.
    assert '"GET /ws" 101' in access and '"POST /api/v4/memories/" 201' in access
    for log in (access, errors):
        assert "token=" not in log and "ticket=" not in log and body["ticket"] not in log
        assert not any(key in log for key in cluster.keys.values())
