"""The load-test tool, run small against a real server: every expected event delivered, none leaked."""

import json
import os
import subprocess
import sys

import pytest

from bench import loadtest
from tests.support.live import ROOT, manage


@pytest.fixture(scope="module")
def server(cluster_factory):
    """One `manage.py serve` on a fresh database: the embedded default, or with a Redis of its own."""
    cluster = cluster_factory("loadtest", count=1, redis=bool(os.environ.get("REDIS_URL")))
    return cluster.servers[0], cluster.env


@pytest.mark.live
def test_loadtest_small_run_loses_and_leaks_nothing(server, tmp_path):
    process, env = server
    out, plot = tmp_path / "summary.json", tmp_path / "latency.png"
    args = ["--port", str(process.port), "--connections", "20", "--tenants", "2", "--rate", "10", "--duration", "3"]
    result = subprocess.run(
        [sys.executable, "-m", "bench.loadtest", *args, "--out", str(out), "--plot", str(plot)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(out.read_text())
    assert summary["ok"] is True
    assert summary["connections"] == {
        "requested": 20,
        "opened": 20,
        "failed": 0,
        "closed_during_run": 0,
        "errors": [],
    }
    assert summary["roles"] == {"admin": 8, "member": 8, "guest": 4}
    assert summary["writes"]["ok"] == 30 and summary["writes"]["failed"] == 0
    events = summary["events"]
    # 10 writes of each visibility, 5 users of 2 sockets each per tenant (admin, member, guest, member, admin):
    # a private memory reaches its owner's 2 sockets, a team one the 8 non-guest sockets, a public one all 10.
    assert {v: (c["writes"], c["expected"]) for v, c in events.items()} == {
        "private": (10, 20),
        "team": (10, 80),
        "public": (10, 100),
    }
    assert all(c["delivered"] == c["expected"] and c["lost"] == c["leaked"] == 0 for c in events.values())
    assert summary["leaked_other_tenant"] == 0
    latency = summary["latency_ms"]
    assert latency["deliveries"] == 200 and 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert summary["server"]["source"] == "/proc" and summary["server"]["pid"] == process.process.pid
    assert summary["server"]["rss_bytes_peak"] > 0 and summary["server"]["cpu"]["seconds"] >= 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "nothing lost, nothing leaked" in result.stdout
    # It removed what it created: only the tables' own rows are left.
    count = "from accounts.models import Tenant; print(Tenant.objects.filter(slug__startswith='loadtest-').count())"
    assert manage(env, "shell", "-c", count).strip().splitlines()[-1] == "0"


def test_loadtest_targets_loopback_unless_a_url_is_given():
    with pytest.raises(SystemExit, match="pass --url"):
        loadtest.target(None, "10.1.2.3", 8000)
    with pytest.raises(SystemExit, match="http"):
        loadtest.target("file:///etc/passwd", "127.0.0.1", 8000)
    assert loadtest.target(None, "localhost", 8001) == "http://localhost:8001"
    assert loadtest.target("http://10.1.2.3:8000/", "127.0.0.1", 8000) == "http://10.1.2.3:8000"
