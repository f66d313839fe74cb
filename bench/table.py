"""`make bench`: issue 16's performance table from one run, every target beside its result.

Run: make bench   (or .venv/bin/python -m bench.table [--only rest latency embedded fanout memory] [--quick])
Needs PostgreSQL and Redis: DATABASE_URL and REDIS_URL, by default the local ones `.ci/run` starts (the database is
created and migrated if need be). The embedded part makes a SQLite file of its own and uses no Redis.

Parts, each against a baseline measured in the same run:
  rest      REST creates/s through `serve --workers <cores>`: PUO Memo's POST /api/v4/memories/ against a bare DRF
            create endpoint (bench/drf: a ModelSerializer and a CreateAPIView) on the same `serve` and database.
  latency   write-to-receipt of REST creates at 100/s and at 50/s, each to 100 subscribers (`serve --workers <cores>`).
  embedded  the embedded default as `make run` serves it (SQLite, no Redis, one process): creates/s, and
            write-to-receipt at 20 creates/s to 50 subscribers.
  fanout    a burst of 200 memories to 100 subscribers: the server's CPU per delivery against the `websockets`
            broadcast ceiling (bench/ceiling.py), and deliveries/s with 1 worker and with one per core.
  memory    idle memory per subscribed connection at 2,000 connections, without and with permessage-deflate,
            against a bare Channels consumer (bench/naive_channels.py), each on a fresh server.

The table goes to stdout (progress lines before it), and with the raw numbers to bench/results.json.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.fanout import (
    Harness,
    Writer,
    ensure_database,
    free_port,
    idle_memory,
    measure_burst,
    measure_steady,
    say,
    start,
    stop,
)
from bench.workers import children, cpu_seconds, load, percentile, start_server

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PARTS = ("rest", "latency", "embedded", "fanout", "memory")
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
BARE_DRF_SETTINGS = "bench.drf.settings"
TENANTS = 4  # the rest part's second PUO Memo shape: its writers spread over this many tenants


@dataclass
class Row:
    """One line of the table: what was measured, the result in words, the target, and whether it was met."""

    part: str
    measure: str
    result: str
    target: str = ""
    met: bool | None = None  # None: no target, shown for orientation
    values: dict = field(default_factory=dict)


@dataclass
class Sizes:
    """How much each part does; --quick shrinks everything for the smoke test."""

    rest_seconds: float = 6  # per round
    rest_rounds: int = 3
    rest_threads: int = 16
    warmup_seconds: float = 2
    subscribers: int = 100
    rates: tuple[float, ...] = (100, 50)
    latency_seconds: float = 10
    embedded_subscribers: int = 50
    embedded_rate: float = 20
    burst: int = 200
    bursts: int = 3  # of the fan-out part, per server
    idle: int = 2000
    settle_seconds: float = 2.0  # before reading a server's memory


QUICK = Sizes(
    rest_seconds=1,
    rest_rounds=1,
    rest_threads=4,
    warmup_seconds=0.5,
    subscribers=5,
    rates=(20, 10),
    latency_seconds=1,
    embedded_subscribers=5,
    embedded_rate=10,
    burst=10,
    bursts=1,
    idle=50,
    settle_seconds=0.5,
)


def server_env(database_url: str, redis_url: str | None) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-not-a-secret",
        "PYTHONPATH": str(ROOT),
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_USER": "10000",
        "PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT": "10000",
        "DJANGO_SETTINGS_MODULE": "puomemo.settings",
    }
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def migrate(env: dict) -> None:
    # With the bare endpoint's settings: the product's tables and the bare endpoint's one.
    subprocess.run(  # noqa: S603
        [PY, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": BARE_DRF_SETTINGS},
        check=True,
    )


def server_pids(process: subprocess.Popen, workers: int) -> list[int]:
    """The processes that serve: the workers under serve's parent, or serve itself."""
    return children(process.pid) if workers > 1 else [process.pid]


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Pool:
    """The run's writer processes, one per database, and (with `reuse`, as --quick does) its `serve` processes."""

    def __init__(self, logs: Path, reuse: bool) -> None:
        self.logs, self.reuse = logs, reuse
        self.writers: dict[str, Writer] = {}
        self.servers: dict[tuple, tuple[subprocess.Popen, int]] = {}

    def writer(self, env: dict) -> Writer:
        """A writer (bench/fanout.py) on the database of `env`: a tenant's member key, bursts, steady REST writes."""
        if env["DATABASE_URL"] not in self.writers:
            self.writers[env["DATABASE_URL"]] = Writer("puomemo", env)
        return self.writers[env["DATABASE_URL"]]

    @contextlib.contextmanager
    def serve(self, env: dict, workers: int, name: str, keep: bool = True):
        """`serve --no-worker --workers N` on a free port: (process, port). Stopped after use unless reused and kept."""
        shape = (env["DATABASE_URL"], env.get("REDIS_URL"), env["DJANGO_SETTINGS_MODULE"], workers)
        if shape not in self.servers:
            server = start_server(workers, False, env, self.logs / f"{name}.log")
            if not (self.reuse and keep):
                try:
                    yield server
                finally:
                    stop_server(server[0])
                return
            self.servers[shape] = server
        yield self.servers[shape]

    def close(self) -> None:
        for process, _ in self.servers.values():
            stop_server(process)
        for writer in self.writers.values():
            writer.stop()


def creates_per_s(port: int, key: str | list[str], path: str, pids: list[int], sizes: Sizes) -> dict:
    """Creates/s of `sizes.rest_threads` keep-alive clients POSTing as fast as the server answers."""
    load(port, key, sizes.rest_threads, sizes.warmup_seconds, False, path)
    cpu = sum(map(cpu_seconds, pids))
    started = time.monotonic()
    creates, latencies, failures = load(port, key, sizes.rest_threads, sizes.rest_seconds, False, path)
    elapsed = time.monotonic() - started
    cpu = sum(map(cpu_seconds, pids)) - cpu
    return {
        "creates": creates,
        "seconds": elapsed,
        "latencies": latencies,
        "failures": failures,
        "cpu_seconds": cpu,
    }


def merged(rounds: list[dict]) -> dict:
    """One shape's rounds as one measurement."""
    creates, latencies = sum(r["creates"] for r in rounds), [ms for r in rounds for ms in r["latencies"]]
    return {
        "creates_per_s": creates / sum(r["seconds"] for r in rounds),
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 99),
        "failures": sum(r["failures"] for r in rounds),
        "server_cpu_ms_per_create": 1000 * sum(r["cpu_seconds"] for r in rounds) / max(1, creates),
    }


# --- The parts ---


def part_rest(env: dict, sizes: Sizes, pool: Pool) -> list[Row]:
    writer = pool.writer(env)
    key = writer.hello["key"]
    # A tenant's writes take turns at its event counter's row until they commit (the log's order): writes spread
    # over tenants show how much of the gap to the bare endpoint that is.
    keys = [key] + [writer.ask(do="tenant_key")["key"] for _ in range(TENANTS - 1)]
    shapes = (
        ("bare DRF", "/bench/notes/", BARE_DRF_SETTINGS, key),
        ("PUO Memo", "/api/v4/memories/", "puomemo.settings", key),
        (f"PUO Memo, {TENANTS} tenants", "/api/v4/memories/", "puomemo.settings", keys),
    )
    rounds: dict[str, list[dict]] = {name: [] for name, *_ in shapes}
    # The three servers run side by side (idle but for the one measured) and take turns, round after round:
    # this machine's speed drifts by a third within minutes, and each round's ratio compares neighbours.
    with contextlib.ExitStack() as servers:
        ports = {}
        for name, _, settings_module, _ in shapes:
            shape_env = {**env, "DJANGO_SETTINGS_MODULE": settings_module}
            slug = f"rest-{name.split(',')[0].replace(' ', '-')}"
            ports[name] = servers.enter_context(pool.serve(shape_env, CORES, slug))
        for turn in range(sizes.rest_rounds):
            for name, path, _, keys_used in shapes:
                process, port = ports[name]
                say(f"rest: round {turn + 1}/{sizes.rest_rounds}, {name}, serve --workers {CORES}, "
                    f"{sizes.rest_threads} clients for {sizes.rest_seconds:g} s")  # fmt: skip
                rounds[name].append(creates_per_s(port, keys_used, path, server_pids(process, CORES), sizes))
                r = rounds[name][-1]
                say(f"rest: {name}: {r['creates'] / r['seconds']:.0f} creates/s")
    found = {name: merged(measured) for name, measured in rounds.items()}
    ours, bare, spread = found["PUO Memo"], found["bare DRF"], found[f"PUO Memo, {TENANTS} tenants"]

    def ratio(name: str) -> float:
        """The median over the rounds of the shape's creates/s against the bare endpoint's in the same round."""
        pairs = zip(rounds[name], rounds["bare DRF"], strict=True)
        return statistics.median(a["creates"] / a["seconds"] / max(b["creates"] / b["seconds"], 1e-9) for a, b in pairs)

    def words(r: dict) -> str:
        return (
            f"{r['creates_per_s']:.0f}/s, p50 {r['p50_ms']:.0f} ms, {r['server_cpu_ms_per_create']:.1f} ms CPU each"
            + (f", {r['failures']} failed" if r["failures"] else "")
        )

    one, spread_ratio = ratio("PUO Memo"), ratio(f"PUO Memo, {TENANTS} tenants")
    return [
        Row("rest", f"bare DRF create, {CORES} workers", words(bare), values=bare),
        Row("rest", f"PUO Memo create, {CORES} workers", words(ours), ">= 200/s", ours["creates_per_s"] >= 200, ours),
        Row("rest", f"PUO Memo create, {CORES} workers, {TENANTS} tenants", words(spread), values=spread),
        Row("rest", "PUO Memo / bare DRF creates/s", f"{one:.2f}x", ">= 0.5x", one >= 0.5, {"ratio": one}),
        Row(
            "rest",
            f"PUO Memo / bare DRF creates/s, {TENANTS} tenants",
            f"{spread_ratio:.2f}x",
            ">= 0.5x",
            spread_ratio >= 0.5,
            {"ratio": spread_ratio},
        ),
    ]


def latency_row(part: str, label: str, steady: dict, target: bool) -> Row:
    delivered = steady["deliveries"] / max(steady["expected"], 1)
    result = (
        f"p50 {steady['latency_p50_ms']:.1f} ms, p99 {steady['latency_p99_ms']:.1f} ms"
        f" ({steady['writes_per_s']:.0f}/s achieved, {100 * delivered:.0f}% delivered)"
    )
    if not target:
        return Row(part, label, result, values=steady)
    met = steady["latency_p50_ms"] <= 15 and steady["latency_p99_ms"] <= 50 and delivered == 1
    return Row(part, label, result, "p50 <= 15, p99 <= 50 ms", met, steady)


async def part_latency(env: dict, sizes: Sizes, pool: Pool) -> list[Row]:
    writer, rows = pool.writer(env), []
    with pool.serve(env, CORES, "latency") as (_, port):
        harness = Harness()
        say(f"latency: serve --workers {CORES}, opening {sizes.subscribers} subscribers")
        await harness.open(port, f"/ws?token={writer.hello['key']}", sizes.subscribers, subscribe=True)
        await measure_steady("latency: warm-up", harness, writer, 20, 1, port)
        for rate in sizes.rates:
            threads = max(4, int(rate) // 6)  # room for the rate while a write takes up to ~60 ms
            steady = await measure_steady("latency", harness, writer, rate, sizes.latency_seconds, port, threads)
            label = f"write-to-receipt, {rate:g} creates/s x {sizes.subscribers} subscribers"
            rows.append(latency_row("latency", label, steady, True))
        harness.close()
    return rows


async def part_embedded(sizes: Sizes, pool: Pool) -> list[Row]:
    directory = Path(tempfile.mkdtemp(prefix="bench-embedded-"))
    env = server_env(f"sqlite:///{directory / 'db.sqlite3'}", None)
    try:
        say("embedded: migrating a fresh SQLite database")
        migrate(env)
        writer = pool.writer(env)
        with pool.serve(env, 1, "embedded", keep=False) as (process, port):  # serve's default without Redis
            key = writer.hello["key"]
            say(f"embedded: {sizes.rest_threads // 2} clients creating for {sizes.rest_seconds:g} s")
            rest = merged([creates_per_s(port, key, "/api/v4/memories/", [process.pid], Sizes(**{
                **asdict(sizes), "rest_threads": max(2, sizes.rest_threads // 2)
            }))])  # fmt: skip
            harness = Harness()
            await harness.open(port, f"/ws?token={key}", sizes.embedded_subscribers, subscribe=True)
            steady = await measure_steady(
                "embedded", harness, writer, sizes.embedded_rate, sizes.latency_seconds, port, 4
            )
            harness.close()
        pool.writers.pop(env["DATABASE_URL"]).stop()  # its database goes next
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    label = f"write-to-receipt, {sizes.embedded_rate:g} creates/s x {sizes.embedded_subscribers} subscribers"
    return [
        Row(
            "embedded",
            "creates/s (SQLite, no Redis, 1 process)",
            f"{rest['creates_per_s']:.0f}/s, p50 {rest['p50_ms']:.0f} ms, {rest['server_cpu_ms_per_create']:.1f} ms"
            " CPU each",
            values=rest,
        ),
        latency_row("embedded", label, steady, False),
    ]


async def bursts(name: str, harness: Harness, writer: Writer, sizes: Sizes, pids: list[int]) -> dict:
    """`sizes.bursts` bursts in a row, summed: one lasts a few hundred ms, and CPU time is counted in 10 ms ticks."""
    runs = [await measure_burst(name, harness, writer, sizes.burst, pids) for _ in range(sizes.bursts)]
    deliveries, seconds = sum(r["deliveries"] for r in runs), sum(r["seconds"] for r in runs)
    cpu_us = sum(r["server_cpu_us_per_delivery"] * r["deliveries"] for r in runs)
    return {
        "bursts": runs,
        "deliveries": deliveries,
        "complete": all(r["complete"] for r in runs),
        "deliveries_per_s": deliveries / seconds if seconds else 0.0,
        "server_cpu_us_per_delivery": cpu_us / max(deliveries, 1),
    }


async def part_fanout(env: dict, sizes: Sizes, pool: Pool) -> list[Row]:
    found = {}
    port = free_port()
    command = [PY, "bench/ceiling.py", "--port", str(port), "--redis", env["REDIS_URL"]]
    server, writer = start(command, env, port, pool.logs / "ceiling.log"), Writer("ceiling", env)
    try:
        harness = Harness()
        say(f"fanout: websockets ceiling, opening {sizes.subscribers} connections")
        await harness.open(port, "/", sizes.subscribers)
        found["ceiling"] = await bursts("fanout: ceiling", harness, writer, sizes, [server.pid])
        harness.close()
    finally:
        writer.stop()
        stop(server)
    for workers in sorted({1, CORES}):
        writer = pool.writer(env)
        with pool.serve(env, workers, f"fanout-{workers}") as (process, port):
            harness = Harness()
            say(f"fanout: PUO Memo, serve --workers {workers}, opening {sizes.subscribers} subscribers")
            await harness.open(port, f"/ws?token={writer.hello['key']}", sizes.subscribers, subscribe=True)
            name = f"fanout: PUO Memo, {workers} worker{'s' * (workers > 1)}"
            found[workers] = await bursts(name, harness, writer, sizes, server_pids(process, workers))
            harness.close()
    ours, ceiling = found[1], found["ceiling"]
    # nan when the ceiling used less CPU than the clock counts (a tiny burst): no ratio, not met.
    cpu_ratio = ours["server_cpu_us_per_delivery"] / (ceiling["server_cpu_us_per_delivery"] or float("nan"))
    complete = all(burst["complete"] for burst in found.values())
    rows = [
        Row(
            "fanout",
            "server CPU per delivery, 1 worker / ceiling",
            f"{ours['server_cpu_us_per_delivery']:.1f} vs {ceiling['server_cpu_us_per_delivery']:.1f} us:"
            f" {cpu_ratio:.2f}x",
            "<= 1.1x",
            cpu_ratio <= 1.1 and complete,
            {"puomemo": ours, "ceiling": ceiling, "ratio": cpu_ratio},
        ),
        Row(
            "fanout",
            "deliveries/s, ceiling (1 process)",
            f"{ceiling['deliveries_per_s']:,.0f}/s",
            values=ceiling,
        ),
    ]
    for workers in sorted({1, CORES}):
        burst = found[workers]
        growth = burst["deliveries_per_s"] / max(ours["deliveries_per_s"], 1e-9)
        label = f"deliveries/s, PUO Memo {workers} worker{'s' * (workers > 1)}"
        result = f"{burst['deliveries_per_s']:,.0f}/s" + (f": {growth:.2f}x 1 worker" if workers > 1 else "")
        if workers > 1:
            rows.append(Row("fanout", label, result, "> 1x 1 worker", growth > 1 and burst["complete"], burst))
        else:
            rows.append(Row("fanout", label, result, values=burst))
    return rows


async def part_memory(env: dict, sizes: Sizes, pool: Pool) -> list[Row]:
    found = {}
    # A fresh server for each (but with --quick): memory freed by one measurement's closed connections would lower
    # the next one's.
    for name, deflate in (("plain", False), ("deflate", True)):
        writer = pool.writer(env)
        with pool.serve(env, 1, f"memory-{name}") as (process, port):
            label = f"memory: PUO Memo, {'permessage-deflate' if deflate else 'no compression'}"
            path = f"/ws?token={writer.hello['key']}"
            found[name] = await idle_memory(label, process, port, path, sizes.idle, True, deflate, sizes.settle_seconds)
    port = free_port()
    daphne = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "bench.naive_channels:application"]
    server = start(daphne, env, port, pool.logs / "memory-bare.log")
    try:
        # daphne alone negotiates no compression: the one baseline for both.
        found["bare"] = await idle_memory(
            "memory: bare Channels consumer", server, port, "/bare", sizes.idle, False, settle=sizes.settle_seconds
        )
    finally:
        stop(server)
    bare = found["bare"]["kib_per_connection"]
    rows = [Row("memory", f"bare Channels consumer, {sizes.idle:,} idle", f"{bare:.1f} KiB each", values=found["bare"])]
    for name, label in (("plain", "no compression"), ("deflate", "permessage-deflate")):
        kib = found[name]["kib_per_connection"]
        ratio = kib / max(bare, 1e-9)
        rows.append(
            Row(
                "memory",
                f"PUO Memo subscribed idle, {label}",
                f"{kib:.1f} KiB each: {ratio:.2f}x bare",
                "<= 1.1x",
                ratio <= 1.1,
                {**found[name], "ratio": ratio},
            )
        )
    return rows


# --- The table ---


def verdict(row: Row) -> str:
    return "" if row.met is None else "met" if row.met else "MISSED"


def table(rows: list[Row], header: str) -> str:
    """The rows as fixed-width text, ready to paste."""
    width = [
        max(len(text) for text in column)
        for column in zip(*[(r.measure, r.result, r.target) for r in rows], strict=True)
    ]
    lines = [header, f"{'part':9} {'measure':{width[0]}}  {'result':{width[1]}}  {'target':{width[2]}}  verdict"]
    for row in rows:
        lines.append(
            f"{row.part:9} {row.measure:{width[0]}}  {row.result:{width[1]}}  {row.target:{width[2]}}  {verdict(row)}"
        )
    return "\n".join(line.rstrip() for line in lines)


async def run(args: argparse.Namespace, sizes: Sizes) -> list[Row]:
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/puomemo_bench")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    env = server_env(database_url, redis_url)
    if set(args.only) - {"embedded"}:
        if database_url.startswith("postgres"):
            ensure_database(database_url)
        say("migrating the database")
        migrate(env)
    rows: list[Row] = []
    pool = Pool(logs, reuse=args.quick)
    try:
        for part in PARTS:
            if part not in args.only:
                continue
            started = time.monotonic()
            if part == "rest":
                rows += await asyncio.to_thread(part_rest, env, sizes, pool)
            elif part == "latency":
                rows += await part_latency(env, sizes, pool)
            elif part == "embedded":
                rows += await part_embedded(sizes, pool)
            elif part == "fanout":
                rows += await part_fanout(env, sizes, pool)
            elif part == "memory":
                rows += await part_memory(env, sizes, pool)
            say(f"{part}: done in {time.monotonic() - started:.0f} s")
    finally:
        pool.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="run these parts only")
    parser.add_argument("--quick", action="store_true", help="a tiny run of each part (the smoke test's)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="where to write the results")
    parser.add_argument("--logs", default=str(Path(tempfile.gettempdir()) / "puomemo-bench"), help="server logs")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    load_before, started = os.getloadavg()[0], time.monotonic()
    say(f"machine: {CORES} cores, load average {load_before:.2f}; parts: {' '.join(args.only)}")
    rows = asyncio.run(run(args, sizes))
    seconds = time.monotonic() - started
    header = (
        f"PUO Memo, one run of `make bench`{' --quick' if args.quick else ''}: {CORES} cores, "
        f"{platform.python_implementation()} {platform.python_version()}, load average {load_before:.2f} at start,"
        f" {os.getloadavg()[0]:.2f} at end, {seconds:.0f} s"
    )
    text = table(rows, header)
    print("\n" + text, flush=True)
    result = {
        "machine": {
            "cores": CORES,
            "python": platform.python_version(),
            "load_average": [load_before, os.getloadavg()[0]],
        },
        "sizes": asdict(sizes),
        "seconds": seconds,
        "rows": [asdict(row) for row in rows],
        "table": text,
    }
    Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    say(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
