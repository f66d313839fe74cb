"""Faults a deployment meets, for real: a reconnect storm after SIGKILL, a rolling restart, a database restore.

The storm and the restart run bench/storm.py's harness (two instances behind Debian's nginx running
docker/nginx.conf, Python clients with their own backoff, writes at 50/s), smaller than the benchmark.
"""

import asyncio
import os
import sqlite3
import subprocess

import psycopg
import pytest
from puomemo_client import PuoMemoClient

from bench.storm import storm
from tests.support.live import api
from tests.support.pyclient import create_memory, next_event, record, running

pytestmark = pytest.mark.live
LOCAL_POSTGRES = "postgres://postgres@127.0.0.1:5432"  # what .ci/run starts


async def test_a_reconnect_storm_after_sigkill_loses_and_doubles_nothing(tmp_path):
    # In two tenants: each client is held to its own tenant's log, and sees nothing of the other's.
    figures = await storm(tmp_path, clients=150, rate=50, mode="kill", tenants=2, settle=60)
    assert figures["cut_off"] > 0  # nginx had put some of them on the instance that was killed
    # Every event of the log reached every client exactly once, through the storm, without a reload.
    assert (figures["lost"], figures["duplicated"], figures["resyncs"]) == (0, 0, 0), figures
    # Cut off (1006), maybe told to come back later (1013): never a server error.
    assert set(figures["close_codes"]) <= {"1006", "1013"}, figures
    assert not figures["survivor_pool_exhausted"], figures


async def test_a_rolling_restart_under_writes_loses_no_event_and_fails_no_write(tmp_path, monkeypatch):
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        # Several instances need PostgreSQL (docs/deployment.md), so the embedded run uses the local PostgreSQL
        # too (CI starts it), with a database of the test's own.
        try:
            psycopg.connect(f"{LOCAL_POSTGRES}/postgres", connect_timeout=3).close()
        except psycopg.OperationalError as error:
            pytest.skip(f"a rolling restart of two instances needs PostgreSQL, and none is at 127.0.0.1: {error}")
        monkeypatch.setenv("DATABASE_URL", f"{LOCAL_POSTGRES}/postgres")
    figures = await storm(tmp_path, clients=50, rate=50, mode="rolling", warmup=6, settle=60)
    assert [round["cut_off"] for round in figures["rounds"]] == [25, 50]  # each instance's clients, in turn
    assert all(round["exited_by_itself"] for round in figures["rounds"]), figures  # drained, not killed
    assert (figures["lost"], figures["duplicated"], figures["resyncs"]) == (0, 0, 0), figures
    # Every write was answered: the stopping instance cut no request nginx had sent it (docs/storms.md).
    assert list(figures["writes"]) == ["201"] and figures["writes"]["201"] > 500, figures
    assert figures["close_codes"].get("1012", 0) >= 75, figures  # told "service restart", and came back


USERS = {"alice": ("restored", "admin"), "bob": ("restored", "member")}


def dump(database_url: str, path) -> None:
    """A backup of the whole database, as an operator takes it."""
    if database_url.startswith("postgres"):
        subprocess.run(["pg_dump", "--format=custom", "--file", str(path), database_url], check=True)
    else:
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as live, sqlite3.connect(path) as copy:
            live.backup(copy)


def restore(database_url: str, path) -> None:
    """Put the backup back into the database the servers are using, while they run."""
    if database_url.startswith("postgres"):
        # Drops and recreates every table of the dump, in one transaction.
        command = ["pg_restore", "--clean", "--if-exists", "--single-transaction", "--no-owner"]
        subprocess.run([*command, "--dbname", database_url, str(path)], check=True)
    else:
        with sqlite3.connect(path) as copy, sqlite3.connect(database_url.removeprefix("sqlite:///")) as live:
            copy.backup(live)


async def test_a_restored_database_tells_clients_to_resync_instead_of_missing_events(cluster_factory, tmp_path):
    cluster = cluster_factory("restore", users=USERS, count=1)
    server, keys, url = cluster.servers[0], cluster.keys, cluster.database.url
    watcher = PuoMemoClient(keys["bob"], server.ws, channels=["memories"])
    away = PuoMemoClient(keys["bob"], server.ws, channels=["memories"])
    watched, missed = record(watcher, "memory.created", "resync_required", "resumed"), record(away, "memory.created")
    async with running(watcher, away):
        for title in ("kept 1", "kept 2"):
            await create_memory(server, keys["alice"], title)
        await asyncio.to_thread(dump, url, tmp_path / "backup")
        for title in ("lost 1", "lost 2", "lost 3"):
            await create_memory(server, keys["alice"], title)
        for _ in range(5):
            await next_event(missed, "memory.created")
    before = (away.last_seq, away.epoch)

    async with running(watcher):
        await next_event(watched, "resumed")  # back where it was: it resumed from seq 5
        await asyncio.to_thread(restore, url, tmp_path / "backup")
        # The connected client is told: what it holds may be gone ("lost 1-3" are), and seqs 3-5 are free again.
        told = await next_event(watched, "resync_required")
        assert told["reason"] == "epoch" and told["epoch"] != before[1] and told["current_seq"] == before[0] - 3
        # Writes after the restore take seqs 3, 4 and 5 again, for other events, past the away client's position.
        for title in ("new 1", "new 2", "new 3", "new 4"):
            await create_memory(server, keys["alice"], title)
        assert [(await next_event(watched, "memory.created"))["memory"]["title"] for _ in range(4)] == [
            "new 1",
            "new 2",
            "new 3",
            "new 4",
        ]

    # The client that was away resumes from its seq of before the restore: told to resync, not fed seq 6 alone.
    returning = PuoMemoClient(keys["bob"], server.ws, channels=["memories"], last_seq=before[0], epoch=before[1])
    heard = record(returning, "memory.created", "resync_required")
    async with running(returning):
        resync = await next_event(heard, "resync_required")
        assert resync["reason"] == "epoch" and resync["current_seq"] == before[0] + 1
        assert heard.empty()  # no event of the new numbering was passed off as the continuation of the old one
    assert (returning.last_seq, returning.epoch) == (resync["current_seq"], resync["epoch"])
    # Reloading over REST shows the restored list with the new writes, in the epoch the client now follows.
    status, page = await asyncio.to_thread(api, server, "GET", "/api/v4/memories/", keys["bob"])
    assert status == 200 and page["epoch"] == resync["epoch"]
    assert sorted(m["title"] for m in page["results"]) == ["kept 1", "kept 2", "new 1", "new 2", "new 3", "new 4"]
