"""Benchmark: what the event log costs a write, as p50/p99 of a REST create with and without it in one run.

Run: DEBUG=1 .venv/bin/python bench/event_log.py [--writes 500] [--writers 4]
Uses DATABASE_URL (a throwaway SQLite file by default; PostgreSQL shows the
counter-row lock that orders one tenant's concurrent writers). The baseline is
the same create with the log switched off: the event only published, as before
the log existed.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "puomemo.settings")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from accounts.models import Role  # noqa: E402
from accounts.services import api_key_create, tenant_create, user_create  # noqa: E402
from realtime import publish, receivers  # noqa: E402
from realtime.protocol import MEMORIES  # noqa: E402


def without_log(**event) -> None:
    """The write path before the log: publish on commit, no numbered row."""
    event.pop("memory_id")
    publish.publish_on_commit(channel=MEMORIES, **event)


def run(keys: list[str], writes: int) -> list[float]:
    """Latencies (s) of `writes` REST creates spread over one thread per key, all in one tenant."""
    latencies: list[float] = []
    lock = threading.Lock()

    def writer(key: str) -> None:
        client = APIClient(SERVER_NAME="localhost")
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        for i in range(writes // len(keys)):
            start = time.perf_counter()
            response = client.post("/api/v4/memories/", {"title": f"note {i}"}, format="json")
            elapsed = time.perf_counter() - start
            assert response.status_code == 201, response.content
            with lock:
                latencies.append(elapsed)
        connection.close()

    threads = [threading.Thread(target=writer, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    tenant = tenant_create(slug=f"bench-{int(time.time())}")
    keys = [
        api_key_create(user=user_create(username=f"{tenant.slug}-w{i}", tenant=tenant, role=Role.MEMBER))[1]
        for i in range(args.writers)
    ]
    run(keys, 50)  # warm up
    print(f"{args.writes} REST creates, {args.writers} writers in one tenant, {connection.vendor}:")
    results = {}
    for label, log in [("without the log", False), ("with the log", True), ("without the log", False)]:
        receivers.log_and_publish = publish.log_and_publish if log else without_log
        latencies = run(keys, args.writes)
        results.setdefault(label, []).append(latencies)
        p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        print(f"  {label:16} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    base = [x for run_ in results["without the log"] for x in run_]
    logged = results["with the log"][0]
    print(
        f"the log costs a create {percentile(logged, 50) / percentile(base, 50):.2f}x at p50, "
        f"{percentile(logged, 99) / percentile(base, 99):.2f}x at p99"
    )


if __name__ == "__main__":
    main()
