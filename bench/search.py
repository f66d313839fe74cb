"""Benchmark: search recall@5 on the labelled set, embeddings per second, and search latency at 10k and 100k
memories in a tenant.

Run: DEBUG=1 .venv/bin/python bench/search.py [--sizes 10000 100000] [--recall-only]
Uses DATABASE_URL (a throwaway SQLite file by default). Recall@5 is reported for the meaning-only search
(before) and the hybrid (after) on tests/data/search_recall.json, query by query where they differ. Latency
is reported as ratios against a baseline measured in the same run: the query's own embedding, which every
search pays whatever the index.
"""

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "puomemo.settings")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3")

import django

django.setup()

import numpy as np  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Role  # noqa: E402
from accounts.principal import Principal  # noqa: E402
from accounts.services import tenant_create, user_create  # noqa: E402
from bench import search_recall  # noqa: E402
from bench.embeddings import median_seconds  # noqa: E402
from memories import embeddings  # noqa: E402
from memories.models import EmbeddingStatus, Memory  # noqa: E402
from memories.search import meaning_search  # noqa: E402
from memories.selectors import memory_search  # noqa: E402


def fill(tenant, owner, count: int) -> None:
    """Add ready memories with random unit vectors until the tenant holds `count`."""
    rng = np.random.default_rng(0)
    have = Memory.objects.filter(tenant=tenant).count()
    stamped = timezone.now() - timedelta(hours=1)  # embedded a while ago, as a settled tenant's are
    while have < count:
        n = min(5000, count - have)
        vectors = rng.standard_normal((n, embeddings.DIMENSIONS)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        Memory.objects.bulk_create(
            Memory(
                tenant=tenant,
                owner=owner,
                title=f"memory {have + i}",
                content="synthetic",
                visibility="team",
                embedding=embeddings.to_bytes(vector),
                embedding_model=embeddings.MODEL_NAME,
                embedding_status=EmbeddingStatus.READY,
                embedded_at=stamped,
            )
            for i, vector in enumerate(vectors)
        )
        have += n
        print(f"  filled {have}/{count}", flush=True)


def recall_report() -> None:
    """Recall@5 of the meaning-only search and of the hybrid on the labelled set, in a tenant of its own."""
    tenant = tenant_create(slug=f"bench-recall-{int(time.time())}")
    owner = user_create(username=f"bench-{tenant.pk}", tenant=tenant, role=Role.MEMBER)
    viewer = Principal.from_membership(owner.membership)
    labelled = search_recall.load_set()
    search_recall.fill(labelled, tenant_id=tenant.pk, owner_id=owner.pk)
    before = search_recall.recall(search_recall.meaning_titles, viewer, labelled)
    after = search_recall.recall(search_recall.hybrid_titles, viewer, labelled)
    print(f"recall@5 on {len(labelled['queries'])} queries over {len(labelled['memories'])} memories:")
    print(f"  meaning only (before): {search_recall.mean(before):.3f}")
    print(f"  hybrid (after):        {search_recall.mean(after):.3f}")
    for q in before:
        if before[q] != after[q]:
            print(f"    {q!r}: {before[q]:.2f} -> {after[q]:.2f}")
    # Queries no note answers, asked of the notes not tagged finance (so "money and taxes" has no answer either).
    Memory.objects.filter(tenant=tenant, tags__icontains="finance").delete()
    for q in labelled["irrelevant"]:
        before, after = search_recall.meaning_titles(viewer, q), search_recall.hybrid_titles(viewer, q)
        print(f"  {q!r}, which no note answers: {len(before)} results before, {len(after)} after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--recall-only", action="store_true", help="Only the recall@5 report.")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    recall_report()
    if args.recall_only:
        return
    tenant = tenant_create(slug=f"bench-{int(time.time())}")
    owner = user_create(username=f"bench-{tenant.pk}", tenant=tenant, role=Role.MEMBER)
    viewer = Principal.from_membership(owner.membership)

    texts = [f"A note about topic {i}: the team met and decided things." for i in range(256)]
    embeddings.encode(texts[:8])  # load the model
    encode_seconds = median_seconds(lambda: embeddings.encode(texts), repeat=3)
    print(f"embeddings: {len(texts) / encode_seconds:,.0f} texts/s (256 short texts in one call, CPU)")

    query_seconds = median_seconds(lambda: embeddings.encode(["dogs"]), repeat=20)
    print(f"baseline, embedding one query: {query_seconds * 1000:.1f} ms")
    for size in args.sizes:
        fill(tenant, owner, size)
        # "dogs" is in no memory's text; "synthetic" is in every one (the keyword side's worst case).
        for q in ("dogs", "synthetic"):
            search_seconds = median_seconds(lambda q=q: memory_search(viewer=viewer, q=q, limit=10), repeat=5)
            meaning_seconds = median_seconds(lambda q=q: meaning_search(viewer, q, 10), repeat=5)
            print(
                f"search {q!r} over {size:,} memories: {search_seconds * 1000:.0f} ms "
                f"= {search_seconds / query_seconds:.1f}x the query embedding "
                f"(meaning only: {meaning_seconds / query_seconds:.1f}x)"
            )


if __name__ == "__main__":
    main()
