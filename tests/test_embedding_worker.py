"""The embeddings worker as a real process: it finds what is due by itself, and killed mid-batch and restarted,
it embeds each latest text once."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from memories import embeddings
from memories.models import EmbeddingStatus, Memory
from tests.support.live import ROOT, shared_test_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]  # a real worker process

COUNT = 1500


def start_worker(log) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DEBUG="1", DATABASE_URL=shared_test_database_url())
    return subprocess.Popen(
        [sys.executable, "manage.py", "embed_worker", "--interval", "0.2"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def ready_count() -> int:
    return Memory.objects.filter(embedding_status=EmbeddingStatus.READY).count()


def wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_killed_worker_resumes_and_embeds_each_latest_text_once(make_user, tmp_path):
    owner = make_user()
    Memory.objects.bulk_create(
        Memory(tenant=owner.membership.tenant, owner=owner, title=f"note {i}", content=f"thought number {i}")
        for i in range(COUNT)
    )
    # bulk_create sends no signals and queues nothing: the worker finds these by their status.

    with (tmp_path / "worker.log").open("w") as log:
        worker = start_worker(log)
        wait_for(lambda: ready_count() > 0)
        os.kill(worker.pid, signal.SIGKILL)  # mid-batch: no chance to finish or clean up
        worker.wait()
    done_before = dict(Memory.objects.filter(embedding_status=EmbeddingStatus.READY).values_list("id", "embedded_at"))
    assert 0 < len(done_before) < COUNT, "the kill should land mid-backlog"

    edited_done = Memory.objects.get(pk=next(iter(done_before)))
    edited_done.content = "edited after its embedding"
    edited_done.save()
    edited_pending = Memory.objects.filter(embedding_status=EmbeddingStatus.PENDING).exclude(pk=edited_done.pk)[0]
    edited_pending.content = "edited while the worker was down"
    edited_pending.save()

    with (tmp_path / "worker2.log").open("w") as log:
        worker = start_worker(log)
        try:
            wait_for(lambda: ready_count() == COUNT)
            # A memory written once the worker is idle is taken by its next look (0.2 s here).
            late = Memory.objects.create(tenant=owner.membership.tenant, owner=owner, title="late", content="idle")
            wait_for(lambda: Memory.objects.get(pk=late.pk).embedding_status == EmbeddingStatus.READY, timeout=30)
        finally:
            worker.terminate()
            assert worker.wait(20) == 0  # SIGTERM ends it cleanly

    after = dict(Memory.objects.values_list("id", "embedded_at"))
    kept = {pk for pk in done_before if pk != edited_done.pk}
    assert all(after[pk] == done_before[pk] for pk in kept), "a finished embedding was computed again"
    assert after[edited_done.pk] > done_before[edited_done.pk]
    for memory in Memory.objects.filter(pk__in=[edited_done.pk, edited_pending.pk]):
        expected = embeddings.encode([embeddings.embedding_text(memory.title, memory.content)])[0]
        assert np.allclose(embeddings.from_bytes(memory.embedding), expected, atol=1e-5)
