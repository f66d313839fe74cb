"""REST creates/s through `manage.py serve` with 1 worker and with N, in one run (docs/performance.md).

With --embedded instead: the embedded default (SQLite, no Redis) as one process and as two on one database
file, creates/s and write-to-receipt within a process and across the two (only the event-log poll crosses).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/puomemo_bench REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python -m bench.workers --workers 1 2 --threads 16 --seconds 20

(those two are the defaults; the database is created and migrated if need be).

For each server shape it starts `serve --no-worker --workers K` on a free port (DEBUG=0), runs `--threads`
client threads that POST /api/v4/memories/ with an API key as fast as the server answers (each thread on
one keep-alive connection, or a new connection per request with --new-connections) for `--seconds` after a
warm-up, and prints creates/s, latency percentiles, the ratio to the first shape, and each worker's CPU
seconds (how evenly the kernel spread the connections). It creates its tenant and user in DATABASE_URL
and deletes them afterwards.
"""

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database the URL names, if missing."""
    import psycopg
    from psycopg import sql

    name = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def create_key(run: str) -> str:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "puomemo.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from accounts.services import api_key_create, tenant_create, user_create

    tenant = tenant_create(slug=f"bench-workers-{run}")
    user = user_create(username=f"bench-workers-{run}", tenant=tenant, role="member")
    return api_key_create(user=user, name="bench")[1]


def delete_run(run: str) -> None:
    from django.contrib.auth import get_user_model

    from accounts.models import Tenant
    from memories.models import Memory

    tenants = Tenant.objects.filter(slug=f"bench-workers-{run}")
    Memory.objects.filter(tenant__in=tenants).delete()
    get_user_model().objects.filter(username=f"bench-workers-{run}").delete()
    tenants.delete()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def database_backends_cpu() -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to this run's database (the servers' pools)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        pids = [row[0] for row in cursor.fetchall()]
    found = {}
    for pid in pids:
        try:
            found[pid] = cpu_seconds(pid)
        except OSError:  # not on this machine's /proc, or gone
            continue
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return sorted(found)


def start_server(workers: int, shared_socket: bool, env: dict, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [PY, "manage.py", "serve", "--no-worker", "--workers", str(workers), "--port", str(port)]
    command += ["--shared-socket"] if shared_socket else []
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)  # noqa: S603
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited; see {log}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/v4/schema/")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"serve did not answer; see {log}")


def load(
    port: int | list[int],
    key: str | list[str],
    threads: int,
    seconds: float,
    new_connections: bool,
    path: str = "/api/v4/memories/",
) -> tuple[int, list[float], int]:
    """POST creates to `path` from `threads` threads for `seconds` over the ports: (creates, latencies ms, failures)."""
    ports = port if isinstance(port, list) else [port]
    keys = key if isinstance(key, list) else [key]  # thread i writes with keys[i % len(keys)]
    stop_at = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(threads)]
    failures = [0] * threads

    def client(index: int) -> None:
        connection = None
        n = 0
        while time.monotonic() < stop_at:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", ports[index % len(ports)], timeout=30)
            body = json.dumps({"title": f"bench {index}-{n}", "content": "x" * 200, "visibility": "team"})
            started = time.perf_counter()
            try:
                headers = {"Authorization": f"Bearer {keys[index % len(keys)]}", "Content-Type": "application/json"}
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 201
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = None
            if ok:
                latencies[index].append((time.perf_counter() - started) * 1000)
            else:
                failures[index] += 1
            if new_connections and connection is not None:
                connection.close()
                connection = None
            n += 1
        if connection is not None:
            connection.close()

    pool = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    merged = [value for values in latencies for value in values]
    return len(merged), merged, sum(failures)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")


def clients_of(pid: int, port: int) -> set[int]:
    """The client ports of the established TCP connections to `port` that process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port and inode in inodes:
                found.add(int(remote.rsplit(":", 1)[1], 16))
    return found


async def websocket_spread(port: int, key: str, pids: list[int], count: int) -> list[int]:
    """Open `count` WebSockets at once; how many each worker holds."""
    import websockets

    async def one():
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?token={key}")
        await ws.send('{"type": "ping"}')
        await ws.recv()
        return ws

    sockets = await asyncio.gather(*(one() for _ in range(count)))
    spread = [len(clients_of(pid, port)) for pid in pids]
    for ws in sockets:
        await ws.close()
    return spread


async def write_to_receipt(writer: int, readers: list[int], key: str, writes: int) -> list[list[float]]:
    """Write `writes` creates at 5/s through port `writer`; for each reader port, the receipt latencies (ms)."""
    import websockets

    sockets = []
    for port in readers:
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?token={key}", max_size=None)
        await ws.send(json.dumps({"type": "subscribe", "data": {"channels": ["memories"]}}))
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
        sockets.append(ws)
    received: list[dict[str, float]] = [{} for _ in readers]

    async def receive(index: int, ws) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "memory.created":
                received[index][frame["data"]["memory"]["id"]] = time.monotonic()

    def post(title: str) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", writer, timeout=30)
        body = json.dumps({"title": title, "visibility": "team"})
        connection.request(
            "POST",
            "/api/v4/memories/",
            body=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        memory = json.loads(response.read())
        connection.close()
        return memory["id"]

    tasks = [asyncio.create_task(receive(i, ws)) for i, ws in enumerate(sockets)]
    sent: dict[str, float] = {}
    for n in range(writes):
        started = time.monotonic()
        sent[await asyncio.to_thread(post, f"latency {n}")] = started
        await asyncio.sleep(max(0.0, 0.2 - (time.monotonic() - started)))
    await asyncio.sleep(3)  # longer than the event-log poll
    for task in tasks:
        task.cancel()
    for ws in sockets:
        await ws.close()
    return [[(got[memory] - at) * 1000 for memory, at in sent.items() if memory in got] for got in received]


def embedded(args: argparse.Namespace, logs: Path) -> int:
    """The embedded default (SQLite, in-process layer, no Redis): one process, and two on one database file."""
    directory = Path(tempfile.mkdtemp(prefix="bench-embedded-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{directory / 'db.sqlite3'}"
    os.environ.pop("REDIS_URL", None)
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench-only-not-a-secret"}
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)  # noqa: S603
    key = create_key("embedded")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; embedded default (SQLite, no Redis)")
    a, port_a = start_server(1, False, env, logs / "embedded-a.log")
    b, port_b = start_server(1, False, env, logs / "embedded-b.log")
    try:
        load([port_a, port_b], key, args.threads, args.warmup, args.new_connections)
        for name, ports in (("1 process", [port_a]), ("2 processes", [port_a, port_b])):
            started = time.monotonic()
            creates, latencies, failures = load(ports, key, args.threads, args.seconds, args.new_connections)
            rate = creates / (time.monotonic() - started)
            print(
                f"{name:>12}: {rate:7.1f} creates/s, p50 {statistics.median(latencies):.1f} ms, "
                f"p99 {percentile(latencies, 99):.1f} ms, failures {failures}",
                flush=True,
            )
        same, other = asyncio.run(write_to_receipt(port_a, [port_a, port_b], key, args.latency_writes))
        for name, values in (("same process", same), ("other process", other)):
            print(
                f"write-to-receipt, {name}: {len(values)}/{args.latency_writes} received, "
                f"p50 {statistics.median(values):.1f} ms, p99 {percentile(values, 99):.1f} ms, "
                f"max {max(values):.1f} ms",
                flush=True,
            )
    finally:
        for process in (a, b):
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        shutil.rmtree(directory, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--shared-socket", action="store_true", help="also run each multi-worker shape with it")
    parser.add_argument("--burst", type=int, default=100, help="WebSockets opened at once, to see how they spread")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--new-connections", action="store_true", help="a new TCP connection per request")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the shapes, interleaved")
    parser.add_argument("--logs", default="bench/results")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="instead: the embedded default (a fresh SQLite file, no Redis) as one process and as two, with the "
        "write-to-receipt latency within a process and across the two",
    )
    parser.add_argument("--latency-writes", type=int, default=50)
    args = parser.parse_args(argv)
    if args.embedded:
        logs = Path(args.logs)
        logs.mkdir(parents=True, exist_ok=True)
        return embedded(args, logs)
    # By default the local PostgreSQL and Redis that .ci/run starts, as make bench uses.
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/puomemo_bench")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    if not os.environ["DATABASE_URL"].startswith("postgres"):
        print("bench/workers.py: DATABASE_URL must name a PostgreSQL database", file=sys.stderr)
        return 2
    ensure_database(os.environ["DATABASE_URL"])
    migrate = {**os.environ, "DEBUG": "1"}
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=migrate, check=True)  # noqa: S603
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:8]
    key = create_key(run)
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-not-a-secret",
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_USER": "1000",
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT": "1000",
    }
    shapes = [(n, False) for n in args.workers]
    if args.shared_socket:
        shapes += [(n, True) for n in args.workers if n > 1]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.threads} client threads, "
        f"{'a new connection per request' if args.new_connections else 'keep-alive'}, {args.seconds:g} s each"
    )
    results = []
    try:
        for round_ in range(args.rounds):
            for workers, shared in shapes:
                name = f"{workers} worker{'s' if workers > 1 else ''}" + (" (one shared socket)" if shared else "")
                process, port = start_server(workers, shared, env, logs / f"workers-{workers}-{shared}.log")
                try:
                    pids = children(process.pid) if workers > 1 else [process.pid]
                    load(port, key, args.threads, args.warmup, args.new_connections)
                    before = [cpu_seconds(pid) for pid in pids]
                    client_before, machine_before = time.process_time(), machine_busy()
                    database_before = database_backends_cpu()
                    started = time.monotonic()
                    creates, latencies, failures = load(port, key, args.threads, args.seconds, args.new_connections)
                    elapsed = time.monotonic() - started
                    cpu = [round(cpu_seconds(pid) - b, 1) for pid, b in zip(pids, before, strict=True)]
                    client_cpu = round(time.process_time() - client_before, 1)
                    machine_after = machine_busy()
                    database_cpu = sum(
                        cpu - database_before.get(pid, 0.0) for pid, cpu in database_backends_cpu().items()
                    )
                    busy = (machine_after[0] - machine_before[0]) / max(1, machine_after[1] - machine_before[1])
                    spread = asyncio.run(websocket_spread(port, key, pids, args.burst)) if args.burst else []
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(30)
                result = {
                    "shape": name,
                    "round": round_ + 1,
                    "creates_per_s": round(creates / elapsed, 1),
                    "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
                    "p99_ms": round(percentile(latencies, 99), 1),
                    "failures": failures,
                    "worker_cpu_s": cpu,
                    "client_cpu_s": client_cpu,
                    "websockets_per_worker": spread,
                    "server_cpu_ms_per_create": round(1000 * sum(cpu) / max(1, creates), 2),
                    "postgres_cpu_ms_per_create": round(1000 * database_cpu / max(1, creates), 2),
                    "machine_busy_percent": round(100 * busy),
                }
                results.append(result)
                base = next(r for r in results if r["round"] == round_ + 1)["creates_per_s"]
                print(
                    f"round {round_ + 1} {name:>24}: {result['creates_per_s']:7.1f} creates/s "
                    f"({result['creates_per_s'] / base:.2f}x), p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
                    f"failures {failures}, worker CPU s {cpu}, CPU ms per create: server "
                    f"{result['server_cpu_ms_per_create']}, PostgreSQL {result['postgres_cpu_ms_per_create']}, "
                    f"client CPU s {client_cpu}, "
                    f"machine busy {result['machine_busy_percent']}%, "
                    f"{args.burst} WebSockets opened at once: {spread}",
                    flush=True,
                )
    finally:
        delete_run(run)
    if args.out:
        Path(args.out).write_text(json.dumps({"parameters": vars(args), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
