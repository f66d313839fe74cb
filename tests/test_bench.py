"""`make bench` run tiny (--quick): every row of the table there, with sane values; no timing asserted."""

import json
import math
import os
import subprocess
import sys

import pytest

from tests.support.live import ROOT, LiveDatabase, RedisServer

pytestmark = pytest.mark.live

ROWS = [
    ("rest", "bare DRF create"),
    ("rest", "PUO Memo create"),
    ("rest", "PUO Memo create, 4 tenants"),
    ("rest", "PUO Memo / bare DRF creates/s"),
    ("rest", "PUO Memo / bare DRF creates/s, 4 tenants"),
    ("latency", "write-to-receipt, 20 creates/s x 5 subscribers"),
    ("latency", "write-to-receipt, 10 creates/s x 5 subscribers"),
    ("embedded", "creates/s (SQLite, no Redis, 1 process)"),
    ("embedded", "write-to-receipt, 10 creates/s x 5 subscribers"),
    ("fanout", "server CPU per delivery, 1 worker / ceiling"),
    ("fanout", "deliveries/s, ceiling (1 process)"),
    ("fanout", "deliveries/s, PUO Memo 1 worker"),
    ("memory", "bare Channels consumer, 50 idle"),
    ("memory", "PUO Memo subscribed idle, no compression"),
    ("memory", "PUO Memo subscribed idle, permessage-deflate"),
]


@pytest.fixture
def services(tmp_path):
    """A fresh database and a Redis of the test's own."""
    redis = RedisServer(tmp_path)
    redis.start()
    database = LiveDatabase(tmp_path)
    yield {"DATABASE_URL": database.url, "REDIS_URL": redis.url}
    redis.stop()
    database.drop()


def test_a_quick_bench_prints_every_row_with_sane_values(services, tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.table", "--quick", "--json", str(out), "--logs", str(tmp_path / "logs")],
        cwd=ROOT,
        env={**os.environ, **services},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())
    rows = {(row["part"], row["measure"].replace(f", {results['machine']['cores']} workers", "")): row
            for row in results["rows"]}  # fmt: skip
    cores = results["machine"]["cores"]
    expected = [(part, name) for part, name in ROWS]
    if cores > 1:
        expected.append(("fanout", f"deliveries/s, PUO Memo {cores} workers"))
    assert sorted(rows) == sorted(expected)
    # Every row is in the printed table too, with a verdict where it has a target.
    for row in results["rows"]:
        assert row["measure"] in result.stdout and row["result"] in result.stdout
        assert (row["met"] is None) == (row["target"] == "")
    rest = rows["rest", "PUO Memo create"]["values"]
    assert rest["creates_per_s"] > 0 and rest["failures"] == 0 and rest["server_cpu_ms_per_create"] > 0
    assert rows["rest", "bare DRF create"]["values"]["failures"] == 0
    for part in ("latency", "embedded"):
        for (kind, name), row in rows.items():
            if kind == part and name.startswith("write-to-receipt"):
                values = row["values"]
                assert values["complete"] and values["deliveries"] == values["expected"] > 0, values
                assert 0 < values["latency_p50_ms"] <= values["latency_p99_ms"] and values["latency_max_ms"] > 0
    for (kind, name), row in rows.items():
        if kind == "fanout" and name.startswith("deliveries/s"):
            assert row["values"]["complete"] and row["values"]["deliveries_per_s"] > 0
    for (kind, _), row in rows.items():
        if kind == "memory":
            # 50 connections may fit in memory the server had freed: a size, not necessarily above zero.
            assert row["values"]["connections"] == 50 and row["values"]["rss_after_mib"] > 0
            assert math.isfinite(row["values"]["kib_per_connection"]) and math.isfinite(row["values"].get("ratio", 1))
