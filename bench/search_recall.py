"""Search recall@k on the labelled set tests/data/search_recall.json: meaning only (before) and hybrid (after).

Used by bench/search.py (which prints the figures) and tests/test_search.py (which holds the hybrid to them).
Needs Django set up and a database; nothing here runs at import.
"""

import json
from collections.abc import Callable
from pathlib import Path

from accounts.principal import Principal
from memories.embedding_service import embed_due_memories
from memories.models import Memory
from memories.search import hybrid_search, meaning_search

RECALL_SET = Path(__file__).resolve().parent.parent / "tests" / "data" / "search_recall.json"
K = 5


def load_set(path: Path = RECALL_SET) -> dict:
    """The labelled set: memories, queries with the titles relevant to each, and queries nothing answers."""
    return json.loads(path.read_text(encoding="utf-8"))


def fill(labelled: dict, *, tenant_id: int, owner_id: int) -> None:
    """Store the set's memories in the tenant (team-visible), embedded."""
    for memory in labelled["memories"]:
        Memory.objects.create(tenant_id=tenant_id, owner_id=owner_id, visibility="team", **memory)
    embed_due_memories()


def hybrid_titles(viewer: Principal, q: str, k: int = K) -> list[str]:
    """The titles of the hybrid search's first k results."""
    return [hit.memory.title for hit in hybrid_search(viewer, q, k)]


def meaning_titles(viewer: Principal, q: str, k: int = K) -> list[str]:
    """The titles of the meaning-only search's first k results (the search before the hybrid)."""
    return [memory.title for memory in meaning_search(viewer, q, k)]


def recall(search: Callable[[Principal, str], list[str]], viewer: Principal, labelled: dict) -> dict[str, float]:
    """Each query's recall@K: the share of its relevant memories among the first K results."""
    return {
        query["q"]: len(set(search(viewer, query["q"])[:K]) & set(query["relevant"])) / len(query["relevant"])
        for query in labelled["queries"]
    }


def mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values)
