"""Search that finds: keyword matches (PostgreSQL full text, SQLite FTS5) and meaning (embeddings), fused by rank."""

import re
from dataclasses import dataclass

from django.db import connection
from django.db.models import BooleanField, FloatField
from django.db.models.expressions import RawSQL
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from accounts.principal import Principal
from memories import embeddings
from memories.models import EmbeddingStatus, Memory
from memories.vector_index import tenant_vectors
from memories.visibility import visible_memories

# Cosine similarity below which a memory is not about the query: such memories are no results, however few
# the others are. On the labelled set (tests/data/search_recall.json) queries that no note answers come
# within 0.21 of their nearest note, and the notes that answer a query mostly lie above 0.25.
MIN_SIMILARITY = 0.25
# Reciprocal rank fusion: a memory scores the sum of 1 / (RRF_K + its rank) over the rankings it is in;
# 60 is the constant of the method's paper, which keeps one ranking's top from drowning the other's.
RRF_K = 60
# Each ranking contributes at most this many memories to the fusion.
CANDIDATES = 50

# PostgreSQL: the stored, GIN-indexed tsvector of title, content and tags (memories/migrations/0006_memory_fulltext.py).
PG_DOCUMENT = "search_document"
PG_QUERY = "websearch_to_tsquery('english'::regconfig, %s)"
FTS_TABLE = "memories_memory_fts"

# Words no query is looking for: PostgreSQL's english configuration drops them, and so does the query for FTS5,
# which keeps every word ("money and taxes" must not find every note with an "and").
# fmt: off
STOP_WORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "how", "i", "if", "in",
    "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "so", "that", "the", "their",
    "them", "then", "there", "these", "they", "this", "to", "was", "we", "were", "what", "when", "where", "which",
    "who", "why", "will", "with", "you", "your",
))
# fmt: on
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Hit:
    """One search result: the memory, its fused score, and which rankings found it."""

    memory: Memory
    score: float
    match: str  # "keyword" (holds words of the query), "semantic" (about it) or "both"
    similarity: float | None  # cosine similarity to the query; None when not embedded yet or not similar enough


def query_terms(q: str) -> list[str]:
    """The words of a query that a keyword search looks for: lower case, without stop words, once each."""
    return list(dict.fromkeys(w for w in _WORD.findall(q.lower()) if w not in STOP_WORDS))


def keyword_ranked(viewer: Principal, q: str, limit: int = CANDIDATES) -> list[tuple]:
    """Ids of the visible memories holding any word of the query (in its title, content or tags), best first
    (most words, rarest words, title over content), with their keyword rank score."""
    terms = query_terms(q)
    if not terms:
        return []
    # Any word, not every word: meaning covers paraphrase, and a long question rarely has all its words in one
    # note. The SQL is constant; the words are parameters, and only \w+ runs, so no query syntax comes through.
    visible = visible_memories(viewer)
    if connection.vendor == "postgresql":
        words = " or ".join(terms)  # websearch syntax: "money or taxes"
        matches = RawSQL(f"{PG_DOCUMENT} @@ {PG_QUERY}", [words], output_field=BooleanField())  # noqa: S611
        rank = RawSQL(f"ts_rank_cd({PG_DOCUMENT}, {PG_QUERY})", [words], output_field=FloatField())  # noqa: S611
        rows = visible.filter(matches).annotate(keyword_rank=rank).order_by("-keyword_rank", "-created_at")
        return list(rows.values_list("id", "keyword_rank")[:limit])
    # SQLite: FTS5 ranks the matches in one pass (bm25 is lower for better ones; a title match weighs three times
    # one in the content), then the visible ones are kept. Materialized: with the rowid condition pushed into it,
    # FTS5 would evaluate the query once per visible row.
    rowid = RawSQL(f"{Memory._meta.db_table}.rowid", [])  # noqa: S611
    visible_rowids, params = visible.annotate(rowid=rowid).values("rowid").query.sql_with_params()
    sql = (
        f"WITH matches AS MATERIALIZED (SELECT rowid AS rid, -bm25({FTS_TABLE}, 3.0, 1.0, 2.0) AS score "  # noqa: S608
        f"FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s) "
        f"SELECT rid, score FROM matches WHERE rid IN ({visible_rowids}) ORDER BY score DESC, rid DESC LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [" OR ".join(f'"{term}"' for term in terms), *params, limit])
        ranked = cursor.fetchall()
    ids = dict(visible.annotate(rowid=rowid).filter(rowid__in=[r for r, _ in ranked]).values_list("rowid", "id"))
    return [(ids[r], score) for r, score in ranked if r in ids]


def semantic_ranked(viewer: Principal, q: str, limit: int = CANDIDATES) -> list[tuple]:
    """Ids of the visible embedded memories at least MIN_SIMILARITY from the query, most similar first."""
    ids, scores, order = tenant_vectors(viewer.tenant_id).ranked(embeddings.encode([q])[0])
    above = order[: int((scores >= MIN_SIMILARITY).sum())]  # order is best first: those above the floor lead
    found: list[tuple] = []
    # The cache holds the tenant's vectors, stale ones too: each window of candidates is checked in one query
    # with the visibility rule (and the trash, and the embedding still being the text's).
    start, window = 0, max(2 * limit, 100)
    while len(found) < limit and start < len(above):
        rows = above[start : start + window]
        kept = set(
            visible_memories(viewer)
            .filter(pk__in=[ids[i] for i in rows], embedding_status=EmbeddingStatus.READY)
            .values_list("id", flat=True)
        )
        found += [(ids[i], float(scores[i])) for i in rows if ids[i] in kept]
        start, window = start + window, window * 4
    return found[:limit]


def fuse(*rankings: list) -> dict:
    """Reciprocal rank fusion of rankings of ids (best first): each id's summed 1 / (RRF_K + rank)."""
    fused: dict = {}
    for ranking in rankings:
        for rank, memory_id in enumerate(ranking, start=1):
            fused[memory_id] = fused.get(memory_id, 0.0) + 1.0 / (RRF_K + rank)
    return fused


def hybrid_search(viewer: Principal, q: str, limit: int) -> list[Hit]:
    """The visible memories that hold the query's words or are about it, best first (at most `limit`)."""
    keyword = keyword_ranked(viewer, q)
    semantic = semantic_ranked(viewer, q)
    fused = fuse([m for m, _ in keyword], [m for m, _ in semantic])
    best = sorted(fused, key=lambda m: -fused[m])[:limit]
    in_keyword, similarity = {m for m, _ in keyword}, dict(semantic)
    memories = visible_memories(viewer).defer("embedding").select_related("owner").in_bulk(best)
    hits = []
    for memory_id in best:
        if memory_id not in memories:
            continue  # deleted between the queries
        found_by = (memory_id in in_keyword, memory_id in similarity)
        match = {(True, True): "both", (True, False): "keyword"}.get(found_by, "semantic")
        hits.append(Hit(memories[memory_id], fused[memory_id], match, similarity.get(memory_id)))
    return hits


def meaning_search(viewer: Principal, q: str, limit: int) -> list[Memory]:
    """The meaning-only ranking search had before the hybrid (no floor): the baseline of bench/search.py."""
    ids, _, order = tenant_vectors(viewer.tenant_id).ranked(embeddings.encode([q])[0])
    order = order[: 4 * limit]  # enough where most of the tenant is visible, as in the benchmark's set
    visible = visible_memories(viewer).filter(embedding_status=EmbeddingStatus.READY).in_bulk([ids[i] for i in order])
    return [visible[ids[i]] for i in order if ids[i] in visible][:limit]


def _stem(term: str) -> str:
    # Enough for highlighting what the full-text stemmers matched: "meetings" marks "meeting" and "meet".
    for suffix in ("ings", "ing", "es", "ed", "s"):
        if term.endswith(suffix) and len(term) - len(suffix) >= 3:
            return term[: -len(suffix)]
    return term


def highlight(text: str, q: str, *, width: int | None = None) -> SafeString:
    """`text` as safe HTML with the query's words marked (<mark>); cut to about `width` characters around the
    first match when given. The text is escaped piece by piece, so nothing in it is ever read as HTML."""
    stems = sorted({_stem(t) for t in query_terms(q)}, key=len, reverse=True)
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(s) for s in stems) + r")\w*", re.IGNORECASE) if stems else None
    first = pattern.search(text) if pattern else None
    if width is not None and len(text) > width:
        start = max(0, (first.start() if first else 0) - width // 4)
        text = ("…" if start else "") + text[start : start + width] + ("…" if start + width < len(text) else "")
    if pattern is None:
        return mark_safe(escape(text))  # noqa: S308 (escaped)
    out, last = [], 0
    for found in pattern.finditer(text):
        out += [escape(text[last : found.start()]), "<mark>", escape(found.group()), "</mark>"]
        last = found.end()
    out.append(escape(text[last:]))
    return mark_safe("".join(out))  # noqa: S308 (every piece of the text is escaped)
