"""Reconnect storms, measured (docs/storms.md): N Python clients on two instances behind nginx, writes at 50/s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/puomemo_bench .venv/bin/python -m bench.storm --clients 1000

It starts a Redis of its own, a fresh database (PostgreSQL when DATABASE_URL names one, else SQLite), two
`manage.py serve --workers 1` instances and Debian's nginx running docker/nginx.conf in front of them, then
connects `--clients` PuoMemoClients (the Python client library, with its own jittered backoff) through nginx:
nginx spreads them over the two. With writes running through nginx at `--rate` a second it either
SIGKILLs one instance (`--mode kill`, the storm: that instance's clients all reconnect to the other at once and
resume), restarts both in turn with SIGTERM (`--mode rolling`: clients get 1012 and come back at once), or
does neither for 30 s (`--mode steady`: what the machine carries with no fault, the storms' baseline).

It prints JSON: how long until every client cut off was live again (its `resumed` after the reconnect), the
survivor's peak RSS and CPU, database transactions per second (PostgreSQL's pg_stat_database), the close codes
clients saw, writes that failed, events lost and duplicated at the clients (against the event log), and how
long the clients took to catch up once the writes stopped.
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from puomemo_client import PuoMemoClient  # noqa: E402

from tests.support.live import (  # noqa: E402
    Cluster,
    Server,
    peak_rss,
    peak_rss_reset,
    start_cluster,
    start_nginx,
    start_server,
)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
USER_ROLES = (("writer", "admin"), ("reader", "member"))


def users(tenants: int) -> dict[str, tuple[str, str]]:
    """A writer (admin) and a reader (member) in each tenant: {name: (tenant, role)}."""
    return {f"{role}-{t}": (f"storm-{t}", kind) for t in range(tenants) for role, kind in USER_ROLES}


@dataclass
class Watched:
    """One client and what it saw: the seq of every memory event, its closes, its resumes, its resyncs."""

    client: PuoMemoClient
    tenant: int
    seqs: list[int] = field(default_factory=list)
    closes: list[tuple[float, int]] = field(default_factory=list)
    resumed: list[float] = field(default_factory=list)
    resyncs: list[dict] = field(default_factory=list)

    def watch(self) -> "Watched":
        client = self.client
        client.on("*", lambda frame: self.seqs.append(frame["seq"]) if "seq" in frame else None)
        client.on("closed", lambda data: self.closes.append((time.monotonic(), data["code"])))
        client.on("resumed", lambda data: self.resumed.append(time.monotonic()))
        client.on("resync_required", self.resyncs.append)
        return self


class Writer:
    """REST creates through nginx at a steady rate, each on a thread of its own pool, in each tenant in turn
    (one key per tenant); counts what failed."""

    def __init__(self, url: str, keys: list[str], rate: float) -> None:
        self.url = url
        self.keys, self.rate = keys, rate
        self.statuses: Counter[int] = Counter()
        self.running = True
        # Enough threads for a second of writes in flight: slow answers must not delay the next writes.
        self.pool = ThreadPoolExecutor(max_workers=max(8, int(rate)))

    async def run(self) -> None:
        pending: set[asyncio.Task] = set()
        start, sent = time.monotonic(), 0
        self.started = start
        while self.running:
            sent += 1
            pending.add(asyncio.create_task(self._create(sent)))
            pending = {task for task in pending if not task.done()}
            await asyncio.sleep(max(0.0, start + sent / self.rate - time.monotonic()))
        self.stopped = time.monotonic()
        await asyncio.gather(*pending)
        self.pool.shutdown()

    async def _create(self, number: int) -> None:
        self.statuses[await asyncio.get_running_loop().run_in_executor(self.pool, self._post, number)] += 1

    def _post(self, number: int) -> int:
        """One create; its HTTP status (nginx's 502 when the instance died under it), or 0 for no answer."""
        body = json.dumps({"title": f"storm {number}", "visibility": "team"}).encode()
        key = self.keys[number % len(self.keys)]
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        request = urllib.request.Request(f"{self.url}/api/v4/memories/", data=body, headers=headers)  # noqa: S310
        try:
            # A slow answer is no failure: on SQLite a write can wait for the database's lock while an instance stops.
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (http, on loopback)
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0


def failed_writes(access_log: Path, most: int = 10) -> list[str]:
    """nginx's log lines of the creates it did not answer 201 (which instance, its status, when), the first few."""
    lines = [line for line in access_log.read_text().splitlines() if '"POST /api/v4/memories/"' in line]
    return [line for line in lines if '/" 201 ' not in line][:most]


def progress(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def commits(cluster: Cluster) -> int | None:
    """Transactions committed in the cluster's database so far (PostgreSQL only)."""
    if not cluster.database.url.startswith("postgres"):
        return None
    import psycopg

    with psycopg.connect(cluster.database.url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def position(url: str, key: str) -> dict:
    """The stream's position as the memory list gives it (asked again while nginx has no instance to ask)."""
    headers = {"Authorization": f"Bearer {key}"}
    request = urllib.request.Request(f"{url}/api/v4/memories/?page_size=1", headers=headers)  # noqa: S310 (http)
    for attempt in range(30):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                body = json.loads(response.read())
            return {"seq": body["seq"], "epoch": body["epoch"]}
        except urllib.error.HTTPError as error:
            if error.code != 502 or attempt == 29:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


async def until(condition, timeout: float, what: str) -> float:
    """Wait until `condition()` holds; return when it did (monotonic), or raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        await asyncio.sleep(0.1)
    return time.monotonic()


# How long the steady mode writes, after the warm-up, with no fault.
STEADY_SECONDS = 30


def restart(cluster: Cluster, server: Server, name: str) -> Server:
    """Start the instance again on its port (nginx has it as an upstream), as a deployment's restart would."""
    replacement = start_server(cluster.env, cluster.tmp / f"{name}.log", ("--no-worker", "--workers", "1"), server.port)
    cluster.extra.append(replacement)
    return replacement


async def storm(
    tmp: Path,
    *,
    clients: int,
    rate: float = 50,
    mode: str = "kill",
    tenants: int = 1,
    warmup: float = 6,
    settle: float = 120,
    settings: dict[str, str] | None = None,
) -> dict:
    """Run one storm (see the module's docstring) in `tmp`; return its figures."""
    cap = str(4 * clients)  # a killed instance's connections count until their entries expire
    env = {
        "DEBUG": "0",  # as deployed: DEBUG keeps every query's SQL in memory
        "SECRET_KEY": "storm-bench-only-not-a-secret",
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_USER": cap,
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT": cap,
        **(settings or {}),
    }
    cluster = start_cluster(tmp, users=users(tenants), settings=env, count=2, args=("--no-worker", "--workers", "1"))
    nginx = None
    try:
        nginx = start_nginx([server.port for server in cluster.servers], connections=4 * clients + 64)
        return await _storm(
            cluster, nginx, clients=clients, rate=rate, mode=mode, tenants=tenants, warmup=warmup, settle=settle
        )
    finally:
        if nginx is not None:
            nginx.stop()
        cluster.stop()


async def _storm(
    cluster: Cluster, nginx, *, clients: int, rate: float, mode: str, tenants: int, warmup: float, settle: float
):
    keys = cluster.keys
    readers = [keys[f"reader-{t}"] for t in range(tenants)]
    start = [await asyncio.to_thread(position, nginx.http, key) for key in readers]
    watched = [
        Watched(
            PuoMemoClient(
                readers[i % tenants],
                nginx.ws,
                channels=["memories"],
                last_seq=start[i % tenants]["seq"],
                epoch=start[i % tenants]["epoch"],
                keepalive=None,
                compression=None,
            ),
            tenant=i % tenants,
        ).watch()
        for i in range(clients)
    ]
    tasks = [asyncio.create_task(w.client.connect()) for w in watched]
    writer = Writer(nginx.http, [keys[f"writer-{t}"] for t in range(tenants)], rate)
    writing = None
    try:
        await until(lambda: all(w.client.connected for w in watched), settle, "every client connected")
        progress(f"{clients} clients connected; writing")
        writing = asyncio.create_task(writer.run())
        await asyncio.sleep(warmup)  # longer than the clients' stable_after: their backoff starts from its first step
        if mode == "kill":
            figures = await _kill(cluster, watched, settle)
        elif mode == "rolling":
            figures = await _rolling(cluster, watched, settle)
        else:  # steady: the same clients and writes, no fault: what the machine carries at all
            await asyncio.sleep(STEADY_SECONDS)
            figures = {}
        await asyncio.sleep(2)  # writes go on after the last client is back
        writer.running = False
        await writing
        final = [(await asyncio.to_thread(position, nginx.http, key))["seq"] for key in readers]
        expected = [set(range(start[t]["seq"] + 1, final[t] + 1)) for t in range(tenants)]
        progress(f"writes stopped at seq {max(final)}; waiting for every event at every client")
        stopped, caught_up = time.monotonic(), None
        with contextlib.suppress(TimeoutError):
            # The newest event at every client (a cheap test, made often); what came before is counted after.
            done = await until(
                lambda: all(w.seqs and w.seqs[-1] >= final[w.tenant] for w in watched), settle, "every event"
            )
            caught_up = round(done - stopped, 1)
        progress("counted")
        codes = Counter(code for w in watched for _, code in w.closes)
        return {
            "mode": mode,
            "clients": clients,
            "rate": rate,
            "tenants": tenants,
            # Each event reaches the clients of its tenant: at --rate, this many deliveries a second.
            "deliveries_per_second": round(rate * clients / tenants),
            **figures,
            "events": sum(map(len, expected)),
            # How far behind the clients were when the writes stopped: 0 when the machine keeps up.
            "seconds_to_catch_up": caught_up,
            "lost": sum(len(expected[w.tenant] - set(w.seqs)) for w in watched),
            "duplicated": sum(len(w.seqs) - len(set(w.seqs)) for w in watched),
            "resyncs": sum(len(w.resyncs) for w in watched),
            "close_codes": {str(code): count for code, count in sorted(codes.items())},
            "writes": {str(code): count for code, count in sorted(writer.statuses.items())},
            # Below --rate when the answers come slower than the writer's threads can wait for them.
            "writes_per_second": round(writer.statuses[201] / (writer.stopped - writer.started), 1),
            "failed_writes": failed_writes(nginx.access_log),
        }
    finally:
        writer.running = False
        if writing is not None and not writing.done():
            await writing
        progress("disconnecting the clients")
        await asyncio.gather(*(w.client.disconnect() for w in watched), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)


async def _kill(cluster: Cluster, watched: list[Watched], settle: float) -> dict:
    """SIGKILL the second instance; measure until each client it had is live again on the first."""
    victim, survivor = cluster.servers[1], cluster.servers[0]
    pid = survivor.process.pid
    peak_rss_reset(pid)
    cpu_before, commits_before = cpu_seconds(pid), await asyncio.to_thread(commits, cluster)
    killed_at = time.monotonic()
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()

    def cut_off() -> list[Watched]:
        return [w for w in watched if any(at >= killed_at for at, _ in w.closes)]

    def back(w: Watched) -> float | None:
        return next((at for at in w.resumed if at >= killed_at and w.client.connected), None)

    # The TCP resets arrive at once: wait a moment for every cut-off client to have noticed.
    await asyncio.sleep(1)
    affected = cut_off()
    progress(f"killed; {len(affected)} clients cut off")
    with contextlib.suppress(TimeoutError):
        await until(lambda: all(back(w) is not None for w in affected), settle, "every cut-off client back")
    times = sorted(at - killed_at for w in affected if (at := back(w)) is not None)
    elapsed = time.monotonic() - killed_at if len(times) < len(affected) else times[-1]
    progress(f"{len(times)} of {len(affected)} back")
    commits_after = await asyncio.to_thread(commits, cluster)
    return {
        "cut_off": len(affected),
        "not_back": len(affected) - len(times),
        "seconds_until_all_live": round(times[-1], 2) if len(times) == len(affected) else None,
        "seconds_until_half_live": round(times[len(affected) // 2], 2) if len(times) > len(affected) // 2 else None,
        "survivor_peak_rss_mib": round(peak_rss(pid) / 1_048_576, 1),
        "survivor_cpu_percent": round(100 * (cpu_seconds(pid) - cpu_before) / elapsed, 1),
        "db_commits_per_second": (
            round((commits_after - commits_before) / elapsed, 1) if commits_before is not None else None
        ),
        "survivor_pool_exhausted": "Too many connections" in survivor.log.read_text(),
    }


async def _rolling(cluster: Cluster, watched: list[Watched], settle: float) -> dict:
    """SIGTERM each instance in turn and start it again on its port; measure each round's return to live."""
    rounds = []
    for index, server in enumerate(list(cluster.servers)):
        stopped_at = time.monotonic()
        progress(f"SIGTERM to the instance on port {server.port}")
        graceful = await asyncio.to_thread(server.stop)  # SIGTERM: its clients get 1012
        progress("it exited" if graceful else "it was still draining: killed")
        await asyncio.sleep(1)
        affected = [w for w in watched if any(at >= stopped_at for at, _ in w.closes)]
        await until(lambda: all(w.client.connected for w in watched), settle, "every client back")
        rounds.append(
            {
                "cut_off": len(affected),
                "seconds_until_all_live": round(time.monotonic() - stopped_at, 2),
                "exited_by_itself": graceful,
            }
        )
        # The next instance stops as soon as this one answers again: nginx must send to it at once.
        cluster.servers[index] = await asyncio.to_thread(restart, cluster, server, f"server-{index}-again")
        progress("started again")
    return {"rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50, help="REST creates a second, through nginx")
    parser.add_argument("--mode", choices=("kill", "rolling", "steady"), default="kill")
    parser.add_argument("--tenants", type=int, default=1, help="clients and writes spread evenly over this many")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a setting of the servers")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.set)
    with tempfile.TemporaryDirectory(prefix="puomemo-storm-") as tmp:
        result = asyncio.run(
            storm(
                Path(tmp), clients=args.clients, rate=args.rate, mode=args.mode, tenants=args.tenants, settings=settings
            )
        )
    result["settings"] = settings
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
