"""Load test: N authenticated /ws connections over T tenants, REST writes at a set rate, every delivery checked.

Run from the checkout, with the server's DATABASE_URL (it creates its tenants, users and API keys there with the
ORM, and deletes them afterwards; `make run` uses the default, db.sqlite3):

    .venv/bin/python -m bench.loadtest --connections 200 --tenants 4 --rate 50 --duration 30

It targets 127.0.0.1:8000 unless told otherwise; `--url` must be given to reach any other host. It prints a
progress line on stderr, then a summary; writes the summary as JSON (`--out`) and a latency plot (`--plot`),
by default in bench/results/.
Exit status 1 when an event was lost or leaked, or a connection or write failed.
"""

import argparse
import asyncio
import ipaddress
import itertools
import json
import math
import os
import socket
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VISIBILITIES = ("private", "team", "public")
# Users per tenant cycle through these roles; the writers are the admins and members.
ROLES = ("admin", "member", "guest", "member")
CONNECTIONS_PER_USER = 2  # within the default per-user cap (5)
OPEN_CONCURRENCY = 50
WRITE_CONCURRENCY = 32
HTTP_TIMEOUT = 10
DRAIN_SECONDS = 10  # after the last write, how long deliveries may still arrive


def may_see(role: str, viewer: int, visibility: str, owner: int) -> bool:
    """The visibility table of docs/rest-api.md, restated so that the server's own rule is checked, not reused."""
    if visibility == "public":
        return True
    if visibility == "team":
        return role in ("admin", "member")
    return viewer == owner


@dataclass
class User:
    user_id: int
    name: str
    tenant: int
    role: str
    key: str = field(repr=False)


@dataclass
class Write:
    memory_id: str
    tenant: int
    owner: int
    visibility: str
    started: float  # monotonic seconds since the run began


@dataclass
class Client:
    user: User
    received: dict[str, float] = field(default_factory=dict)  # memory id -> receipt time
    error: str = ""
    ws: object = None


def target(url: str | None, host: str, port: int) -> str:
    """The server's base URL: loopback unless --url names another host explicitly."""
    if url:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise SystemExit("--url must be an http:// or https:// URL")
        return url.rstrip("/")
    try:
        loopback = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        loopback = False
    if not loopback:
        raise SystemExit(f"{host} is not a loopback address; pass --url to load-test another host on purpose")
    return f"http://{host}:{port}"


# --- Setting up and tearing down the users, in the server's database -----------


def django_setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "puomemo.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()


def create_users(run: str, tenants: int, connections: int) -> list[User]:
    """Tenants `loadtest-<run>-<i>` with enough users for `connections` sockets; keys stored hashed, kept in memory."""
    from accounts.services import api_key_create, tenant_create, user_create

    per_tenant = math.ceil(connections / tenants)
    users_per_tenant = math.ceil(per_tenant / CONNECTIONS_PER_USER)
    users = []
    for t in range(tenants):
        tenant = tenant_create(slug=f"loadtest-{run}-{t}")
        for u in range(users_per_tenant):
            role = ROLES[u % len(ROLES)]
            user = user_create(username=f"loadtest-{run}-{t}-{u}", tenant=tenant, role=role)
            _, key = api_key_create(user=user, name="loadtest")
            users.append(User(user.id, user.username, tenant.id, role, key))
    return users


def delete_users(run: str) -> None:
    from django.contrib.auth import get_user_model

    from accounts.models import Tenant
    from memories.models import Memory

    # Memories first, in a delete of their own: their deletion logs events, which the tenant's delete then removes.
    tenants = Tenant.objects.filter(slug__startswith=f"loadtest-{run}-")
    Memory.objects.filter(tenant__in=tenants).delete()
    get_user_model().objects.filter(username__startswith=f"loadtest-{run}-").delete()
    tenants.delete()


# --- Talking to the server ------------------------------------------------------


def rest(base: str, method: str, path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310  (target() allows http and https only)
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {}


async def open_client(base: str, client: Client, deadline: float) -> None:
    """Connect with a single-use ticket (the API key stays out of the URL) and subscribe to memories."""
    import websockets

    try:
        code, body = await asyncio.to_thread(rest, base, "POST", "/api/v4/ws/ticket", client.user.key)
        if code != 201:
            raise RuntimeError(f"ticket: HTTP {code}")
        ws_base = "ws" + base[len("http") :]
        timeout = max(0.1, deadline - time.monotonic())
        ws = await asyncio.wait_for(websockets.connect(f"{ws_base}/ws?ticket={body['ticket']}", max_size=None), timeout)
        await ws.send(json.dumps({"type": "subscribe", "data": {"channels": ["memories"]}}))
        while time.monotonic() < deadline:  # presence frames may come first; bounded all the same
            frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
            if frame["type"] == "subscribed":
                break
        else:
            raise TimeoutError("no subscribed reply before the deadline")
        client.ws = ws
    except Exception as error:  # counted and reported, never fatal: a refused connection is a result
        code = getattr(getattr(error, "rcvd", None), "code", None)
        client.error = f"close {code}" if code else f"{type(error).__name__}: {error}"[:200]


async def receive(client: Client, started: float, stop: asyncio.Event) -> None:
    """Record each memory.created's receipt time until told to stop; ping now and then against the idle timeout."""
    import websockets

    last_ping = time.monotonic()
    while not stop.is_set():
        try:
            raw = await asyncio.wait_for(client.ws.recv(), 1)
        except TimeoutError:
            if time.monotonic() - last_ping > 60:
                await client.ws.send('{"type": "ping"}')
                last_ping = time.monotonic()
            continue
        except websockets.ConnectionClosed as closed:
            client.error = f"closed {closed.rcvd.code if closed.rcvd else 1006} during the run"
            return
        now = time.monotonic() - started
        frame = json.loads(raw)
        if frame["type"] == "memory.created":
            client.received.setdefault(frame["data"]["memory"]["id"], now)


# --- Server process figures -------------------------------------------------------


def listening_pid(port: int) -> int | None:
    """The local process listening on `port` (from /proc), if this user may see it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


def process_figures(base: str, pid: int | None) -> tuple[float, int] | None:
    """(CPU seconds, RSS bytes) of the server: from /proc for a local pid, else from its /metrics."""
    if pid:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/status").read_text()
            rss = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
            return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"), rss
        except (OSError, StopIteration):
            return None
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            samples = dict(
                line.rsplit(" ", 1) for line in response.read().decode().splitlines() if line[:1] not in ("#", "")
            )
        return float(samples["process_cpu_seconds_total"]), int(float(samples["process_resident_memory_bytes"]))
    except (OSError, KeyError, ValueError):
        return None


# --- The run ------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


async def run(args: argparse.Namespace, base: str, users: list[User]) -> tuple[dict, list[tuple[float, float]]]:
    started = time.monotonic()
    by_tenant: dict[int, list[User]] = {}
    for user in users:
        by_tenant.setdefault(user.tenant, []).append(user)
    # Each user's sockets, spread over the tenants in turn, args.connections in all.
    slots = [user for _ in range(CONNECTIONS_PER_USER) for user in users][: args.connections]
    clients = [Client(user) for user in slots]
    pid = args.server_pid or (listening_pid(urllib.parse.urlsplit(base).port or 80) if args.url is None else None)

    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    open_deadline = time.monotonic() + args.open_timeout

    async def opened(client: Client) -> None:
        async with gate:
            await open_client(base, client, open_deadline)

    await asyncio.gather(*(opened(client) for client in clients))
    live = [client for client in clients if client.ws is not None]
    print(f"opened {len(live)}/{len(clients)} connections in {time.monotonic() - started:.1f} s", file=sys.stderr)

    writes: dict[str, Write] = {}
    failed_writes = skipped_writes = 0
    stop = asyncio.Event()
    receivers = [asyncio.create_task(receive(client, started, stop)) for client in live]
    writers = itertools.cycle([user for user in users if user.role in ("admin", "member")])
    visibilities = itertools.cycle(VISIBILITIES)
    total = int(args.rate * args.duration)
    write_gate = asyncio.Semaphore(WRITE_CONCURRENCY)
    pending: set[asyncio.Task] = set()
    lock = threading.Lock()
    counting = True

    async def write(writer: User, visibility: str) -> None:
        nonlocal failed_writes, skipped_writes
        async with write_gate:
            if time.monotonic() > load_start + args.duration + 1:
                skipped_writes += 1  # the server fell behind the rate: say so rather than queue for ever
                return
            began = time.monotonic() - started
            code, body = await asyncio.to_thread(
                rest, base, "POST", "/api/v4/memories/", writer.key, {"title": "load test", "visibility": visibility}
            )
        with lock:
            if not counting:
                return
            if code == 201:
                writes[body["id"]] = Write(body["id"], writer.tenant, writer.user_id, visibility, began)
            else:
                failed_writes += 1

    before = process_figures(base, pid)  # CPU counts from here: the writes and their fan-out
    peak_rss = before[1] if before else 0
    load_start = time.monotonic()
    last_progress = 0.0
    for i in range(total):  # bounded: rate x duration writes, one every 1/rate seconds
        delay = load_start + i / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(write(next(writers), next(visibilities)))
        pending.add(task)
        task.add_done_callback(pending.discard)
        if time.monotonic() - last_progress >= 1:
            last_progress = time.monotonic()
            figures = process_figures(base, pid)
            peak_rss = max(peak_rss, figures[1] if figures else 0)
            delivered = sum(len(client.received) for client in live)
            print(
                f"\r{time.monotonic() - load_start:5.1f}/{args.duration:g} s  connections {len(live)}"
                f"  writes {len(writes)}/{total} ({failed_writes} failed, {len(pending)} waiting)"
                f"  deliveries {delivered}  ",
                end="",
                file=sys.stderr,
                flush=True,
            )
    if pending:
        await asyncio.wait(pending, timeout=HTTP_TIMEOUT + 5)
    with lock:
        counting = False  # a write still waiting past every timeout counts neither way
    write_seconds = time.monotonic() - load_start

    # Drain: until every expected delivery came, or DRAIN_SECONDS passed.
    expected_pairs = {
        (index, memory_id)
        for index, client in enumerate(live)
        for memory_id, w in writes.items()
        if w.tenant == client.user.tenant and may_see(client.user.role, client.user.user_id, w.visibility, w.owner)
    }
    drain_start = time.monotonic()
    drain_deadline = drain_start + DRAIN_SECONDS
    while time.monotonic() < drain_deadline:
        if all(memory_id in live[index].received for index, memory_id in expected_pairs):
            break
        await asyncio.sleep(0.2)
    drained = time.monotonic() - drain_start
    after = process_figures(base, pid)
    stop.set()
    await asyncio.gather(*receivers, return_exceptions=True)
    peak_rss = max(peak_rss, after[1] if after else 0)
    await asyncio.gather(*(client.ws.close() for client in live), return_exceptions=True)
    print(file=sys.stderr)

    per_visibility = {v: {"writes": 0, "expected": 0, "delivered": 0, "lost": 0, "leaked": 0} for v in VISIBILITIES}
    for w in writes.values():
        per_visibility[w.visibility]["writes"] += 1
    latencies, timeline = [], []
    for index, client in enumerate(live):
        for memory_id, w in writes.items():
            counts = per_visibility[w.visibility]
            expected = (index, memory_id) in expected_pairs
            got = client.received.get(memory_id)
            counts["expected"] += expected
            if expected and got is not None:
                counts["delivered"] += 1
                latencies.append((got - w.started) * 1000)
                timeline.append((w.started - (load_start - started), (got - w.started) * 1000))
            elif expected:
                counts["lost"] += 1
            elif got is not None:
                counts["leaked"] += 1
    # Any tenant but one's own is a leak whatever the visibility (counted in "leaked" above as well).
    leaked_other_tenant = sum(
        1
        for client in live
        for memory_id in client.received
        if memory_id in writes and writes[memory_id].tenant != client.user.tenant
    )
    cpu = None
    if before and after:
        busy = after[0] - before[0]
        cpu = {"seconds": round(busy, 2), "cores": round(busy / (write_seconds + drained), 2)}
    summary = {
        "target": base,
        "connections": {
            "requested": len(clients),
            "opened": len(live),
            "failed": len(clients) - len(live),
            "closed_during_run": sum(1 for client in live if client.error),
            "errors": sorted({client.error for client in clients if client.error})[:10],
        },
        "tenants": len(by_tenant),
        "roles": {role: sum(1 for c in live if c.user.role == role) for role in ("admin", "member", "guest")},
        "writes": {
            "requested": total,
            "ok": len(writes),
            "failed": failed_writes,
            "skipped": skipped_writes,
            "rate_per_second": round(len(writes) / write_seconds, 1),
        },
        "events": per_visibility,
        "leaked_other_tenant": leaked_other_tenant,
        "latency_ms": {
            "deliveries": len(latencies),
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": max(latencies, default=None),
            "mean": statistics.fmean(latencies) if latencies else None,
        },
        "server": {
            "pid": pid,
            "source": "/proc" if pid else "/metrics",
            "cpu": cpu,
            "rss_bytes_peak": peak_rss or None,
            "rss_bytes_end": after[1] if after else None,
        },
        "seconds": {"writing": round(write_seconds, 2), "total": round(time.monotonic() - started, 2)},
    }
    summary["ok"] = (
        summary["connections"]["failed"] == 0
        and summary["connections"]["closed_during_run"] == 0
        and failed_writes == 0
        and leaked_other_tenant == 0
        and all(counts["lost"] == 0 and counts["leaked"] == 0 for counts in per_visibility.values())
    )
    return summary, timeline


def plot(timeline: list[tuple[float, float]], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if timeline:
        left.scatter([t for t, _ in timeline], [ms for _, ms in timeline], s=2, alpha=0.3)
        ordered = sorted(ms for _, ms in timeline)
        right.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))])
        for name in ("p50", "p95", "p99"):
            value = summary["latency_ms"][name]
            right.axvline(value, linestyle="--", linewidth=0.8, color="grey")
            right.text(value, 0.02, f" {name} {value:.0f} ms", rotation=90, fontsize=8)
    left.set(xlabel="write started (s into the writes)", ylabel="write → receipt (ms)", title="each delivery")
    right.set(xlabel="write → receipt (ms)", ylabel="fraction of deliveries", title="distribution", xscale="log")
    conns, writes = summary["connections"], summary["writes"]
    figure.suptitle(
        f"{conns['opened']} connections, {summary['tenants']} tenants, {writes['ok']} writes at"
        f" {writes['rate_per_second']}/s, {summary['latency_ms']['deliveries']} deliveries"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def print_summary(summary: dict) -> None:
    conns, writes, latency = summary["connections"], summary["writes"], summary["latency_ms"]
    print(f"target {summary['target']}: {summary['tenants']} tenants, roles {summary['roles']}")
    print(
        f"connections: {conns['opened']} opened, {conns['failed']} failed"
        + (f" {conns['errors']}" if conns["errors"] else "")
    )
    print(
        f"writes: {writes['ok']} ok, {writes['failed']} failed, {writes['rate_per_second']}/s"
        + (f", {writes['skipped']} not sent: the server fell behind the rate" if writes["skipped"] else "")
    )
    print("events     writes  expected  delivered  lost  leaked")
    for visibility, counts in summary["events"].items():
        print(
            f"  {visibility:<8} {counts['writes']:>6} {counts['expected']:>9} {counts['delivered']:>10}"
            f" {counts['lost']:>5} {counts['leaked']:>7}"
        )
    print(f"  another tenant's events received: {summary['leaked_other_tenant']}")
    if latency["deliveries"]:
        print(
            "write → receipt: " + "  ".join(f"{name} {latency[name]:.1f} ms" for name in ("p50", "p95", "p99", "max"))
        )
    server = summary["server"]
    if server["cpu"] or server["rss_bytes_peak"]:
        cpu = server["cpu"] or {}
        rss = (server["rss_bytes_peak"] or 0) / 2**20
        print(
            f"server ({server['source']}, pid {server['pid']}): {cpu.get('seconds')} CPU s,"
            f" {cpu.get('cores')} cores while writing and delivering, peak RSS {rss:.0f} MiB"
        )
    print("OK: nothing lost, nothing leaked" if summary["ok"] else "FAILED: see above")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="the server's base URL, e.g. http://10.0.0.5:8000 (any host; say so on purpose)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback host when --url is not given")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--tenants", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20, help="REST writes per second, over all tenants")
    parser.add_argument("--duration", type=float, default=10, help="seconds of writes")
    parser.add_argument("--open-timeout", type=float, default=60, help="seconds to open every connection")
    parser.add_argument("--server-pid", type=int, help="read CPU and RSS of this local pid (default: found by port)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loadtest.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "bench" / "results" / "loadtest.png")
    parser.add_argument("--keep", action="store_true", help="keep the tenants, users and keys it created")
    args = parser.parse_args(argv)
    base = target(args.url, args.host, args.port)
    if not (1 <= args.connections <= 10_000 and 1 <= args.tenants <= args.connections):
        parser.error("--connections must be 1-10000 and --tenants 1-connections")
    if not (0 < args.rate <= 5_000 and 0 < args.duration <= 3_600 and 0 < args.open_timeout <= 600):
        parser.error("--rate must be in (0, 5000], --duration in (0, 3600], --open-timeout in (0, 600]")
    django_setup()
    run_id = uuid.uuid4().hex[:8]
    users = create_users(run_id, args.tenants, args.connections)
    try:
        summary, timeline = asyncio.run(run(args, base, users))
    finally:
        if not args.keep:
            delete_users(run_id)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    plot(timeline, summary, args.plot)
    print_summary(summary)
    print(f"wrote {args.out} and {args.plot}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
