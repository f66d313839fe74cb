"""`manage.py serve --workers N`: one port served by N daphne processes, as real processes on PostgreSQL (or
SQLite) and a Redis of the test's own."""

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.workers import clients_of
from realtime.protocol import CloseCode
from tests.support.live import ROOT, close_code, next_of_type, subscribed

pytestmark = pytest.mark.live

USERS = {"alice": ("acme", "admin"), "bob": ("acme", "member")}
# Only pub/sub can deliver an event within a test's wait: the event log is read once a minute.
SETTINGS = {"PUOMEMO_EVENT_LOG_POLL_SECONDS": "60", "PUOMEMO_WS_MAX_CONNECTIONS_PER_USER": "100"}
WORKERS = ("--no-worker", "--workers", "2")


@pytest.fixture(scope="module")
def cluster(cluster_factory):
    """A fresh database with users and keys and a Redis; each test starts its own serve."""
    return cluster_factory("workers", users=USERS, settings=SETTINGS, count=0)


@pytest.fixture
def served(cluster):
    """`serve --no-worker --workers 2` on a free port, stopped after the test (and with the cluster at the latest)."""
    server = cluster.start_server(f"serve-{len(cluster.extra)}", WORKERS)
    yield server
    server.stop()


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except OSError:  # exited meanwhile
            continue
    return sorted(found)


def holder(workers: list[int], port: int, client_port: int) -> int:
    """The worker that holds the connection from `client_port`."""
    (pid,) = [pid for pid in workers if client_port in clients_of(pid, port)]
    return pid


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def sockets_on_each(server, token: str, workers: list[int], limit: int = 40) -> dict[int, object]:
    """Subscribed WebSockets, opened until each worker holds one: {worker pid: socket}; the spare ones closed."""
    found: dict[int, object] = {}
    spare = []
    for _ in range(limit):
        ws = await subscribed(server.ws, token)
        pid = await asyncio.to_thread(holder, workers, server.port, ws.local_address[1])
        if pid in found:
            spare.append(ws)
        else:
            found[pid] = ws
        if len(found) == len(workers):
            break
    for ws in spare:
        await ws.close()
    assert len(found) == len(workers), f"{limit} connections all went to {list(found)}"
    return found


def keep_alive_on_each(server, workers: list[int], limit: int = 40) -> dict[int, http.client.HTTPConnection]:
    """Keep-alive HTTP connections, opened until each worker holds one: {worker pid: connection}."""
    found: dict[int, http.client.HTTPConnection] = {}
    for _ in range(limit):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/api/v4/schema/")
        connection.getresponse().read()
        pid = holder(workers, server.port, connection.sock.getsockname()[1])
        if pid in found:
            connection.close()
        else:
            found[pid] = connection
        if len(found) == len(workers):
            return found
    raise AssertionError(f"{limit} connections all went to {list(found)}")


def create(connection: http.client.HTTPConnection, token: str, title: str) -> dict:
    """POST a memory on this very connection (and so through the worker that holds it)."""
    body = json.dumps({"title": title, "visibility": "team"})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connection.request("POST", "/api/v4/memories/", body=body, headers=headers)
    response = connection.getresponse()
    payload = json.loads(response.read())
    assert response.status == 201, payload
    return payload


def test_two_workers_answer_on_one_port(served):
    """The parent starts two workers, prints a line for each, and both serve requests on the one port."""
    workers = children(served.process.pid)
    assert len(workers) == 2, workers
    log = served.log.read_text()
    assert "with 2 workers" in log
    for index, pid in enumerate(workers, start=1):
        assert f"Worker {index}/2 started (pid {pid})." in log
    connections = keep_alive_on_each(served, workers)
    assert set(connections) == set(workers)
    for connection in connections.values():
        connection.close()


async def test_an_event_written_through_one_worker_reaches_a_websocket_on_the_other(cluster, served):
    """Through Redis pub/sub: the event log, read once a minute here, would be far too late."""
    workers = children(served.process.pid)
    sockets = await sockets_on_each(served, cluster.keys["bob"], workers)
    writers = await asyncio.to_thread(keep_alive_on_each, served, workers)
    for writer_pid, connection in writers.items():
        memory = await asyncio.to_thread(create, connection, cluster.keys["alice"], f"through {writer_pid}")
        for reader_pid, ws in sockets.items():
            frame = await asyncio.wait_for(next_of_type(ws, "memory.created"), 10)
            assert frame["data"]["memory"]["id"] == memory["id"], (writer_pid, reader_pid)
        connection.close()
    for ws in sockets.values():
        await ws.close()


async def test_sigterm_closes_every_workers_websockets_as_one_process_does_and_all_exit(cluster, served):
    """SIGTERM to the parent reaches each worker, whose clients get the shutdown close (1012); then all exit."""
    workers = children(served.process.pid)
    sockets = await sockets_on_each(served, cluster.keys["bob"], workers)
    served.process.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(close_code(ws) for ws in sockets.values()))
    assert codes == [CloseCode.SERVICE_RESTART] * len(sockets)
    assert await asyncio.to_thread(served.process.wait, 30) == 0
    assert all(gone(pid) for pid in workers)


def test_a_worker_that_dies_stops_the_others_and_the_parent_says_so(served):
    """No silent restart: the parent names the dead worker, stops the other and exits non-zero."""
    first, second = children(served.process.pid)
    os.kill(second, signal.SIGKILL)
    assert served.process.wait(30) == 1
    assert f"Worker 2/2 (pid {second}) was killed by SIGKILL; stopping the others." in served.log.read_text()
    assert gone(first) and gone(second)


def test_the_workers_die_with_a_killed_parent(served):
    """A SIGKILLed serve takes its workers with it, as a single process would take its connections."""
    workers = children(served.process.pid)
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(10)
    deadline = time.monotonic() + 10
    while not all(gone(pid) for pid in workers):
        assert time.monotonic() < deadline, workers
        time.sleep(0.1)


def test_several_workers_without_redis_are_refused_in_one_line(tmp_path):
    """The embedded default (no REDIS_URL) serves from one process; asking for more is one clear line."""
    env = {key: value for key, value in os.environ.items() if key not in {"REDIS_URL", "DATABASE_URL"}}
    env |= {"DEBUG": "1", "PUOMEMO_ENV_FILE": os.devnull, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    result = subprocess.run(
        [sys.executable, "manage.py", "serve", "--workers", "2", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "insecure development key" not in line]
    assert lines == [
        "CommandError: --workers 2 needs REDIS_URL: without Redis each process has its own channel layer and "
        "connection counts, so the embedded default serves from one process."
    ]


async def test_a_burst_of_websockets_spreads_over_both_workers(cluster, served):
    """Each worker has a socket of its own (SO_REUSEPORT): a burst is not left to whichever accepts first."""
    workers = children(served.process.pid)
    sockets = await asyncio.gather(*(subscribed(served.ws, cluster.keys["bob"]) for _ in range(40)))
    held = [len(await asyncio.to_thread(clients_of, pid, served.port)) for pid in workers]
    assert sum(held) == 40 and min(held) >= 5, held
    for ws in sockets:
        await ws.close()


def test_a_second_serve_on_the_same_port_is_refused(cluster, served):
    """SO_REUSEPORT would let a second serve share the port silently: it is refused as a port in use."""
    result = subprocess.run(
        [sys.executable, "manage.py", "serve", *WORKERS, "--port", str(served.port)],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "insecure development key" not in line]
    assert lines == [f"CommandError: Cannot listen on 127.0.0.1:{served.port}: Address already in use."]
    assert len(children(served.process.pid)) == 2
