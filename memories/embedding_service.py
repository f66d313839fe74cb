"""Embedding memories: take what is due, encode it in batches, store each vector unless its text changed meanwhile."""

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from memories import embeddings
from memories.models import EmbeddingStatus, Memory
from memories.signals import embedding_ready
from memories.visibility import Audience

logger = logging.getLogger(__name__)

BATCH_SIZE = 32
MAX_ATTEMPTS = 5
RETRY_BASE = timedelta(seconds=10)


def due_for_embedding() -> Q:
    """Pending memories, and failed ones whose retry time has come."""
    retry = Q(
        embedding_status=EmbeddingStatus.FAILED,
        embedding_attempts__lt=MAX_ATTEMPTS,
        embedding_retry_at__lte=timezone.now(),
    )
    return Q(embedding_status=EmbeddingStatus.PENDING) | retry


def embed_due_memories(
    *,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Embed everything due, a batch at a time, until none is left or `stop` is set; return how many were stored.

    A memory whose encoding fails is marked failed, due again at its retry time.
    """
    stored = 0
    failed_ids: set = set()
    while stop is None or not stop.is_set():
        batch = list(
            Memory.objects.filter(due_for_embedding())
            .exclude(pk__in=failed_ids)
            .order_by("updated_at")
            .values("id", "title", "content", "text_version")[:batch_size]
        )
        if not batch:
            return stored
        texts = [embeddings.embedding_text(m["title"], m["content"]) for m in batch]
        try:
            vectors = list(embeddings.encode(texts))
        except Exception:
            # One bad text must not sink the batch: encode one at a time and mark what fails.
            vectors = [_encode_one(memory, text) for memory, text in zip(batch, texts, strict=True)]
        for memory, vector in zip(batch, vectors, strict=True):
            if vector is None or (kept := _stored(memory, vector)) is None:
                failed_ids.add(memory["id"])
            else:
                stored += kept
        if progress:
            progress(stored)
    return stored


def _encode_one(memory: dict, text: str):
    try:
        return embeddings.encode([text])[0]
    except Exception as error:
        logger.exception("Embedding memory %s failed", memory["id"])
        _mark_failed(memory, error)
        return None


def _mark_failed(memory: dict, error: Exception) -> None:
    """Record the failure and when it is due again (after the last attempt, never)."""
    current = Memory.objects.filter(pk=memory["id"], text_version=memory["text_version"])
    attempts = (current.values_list("embedding_attempts", flat=True).first() or 0) + 1
    retry_at = timezone.now() + RETRY_BASE * 2 ** (attempts - 1)
    current.update(
        embedding_status=EmbeddingStatus.FAILED,
        embedding_error=f"{type(error).__name__}: {error}"[:500],
        embedding_attempts=attempts,
        embedding_retry_at=retry_at,
    )


def _stored(memory: dict, vector) -> bool | None:
    # None when storing failed: the memory is marked failed like one that cannot be encoded,
    # else it would stay first in line and every look would encode its batch again.
    try:
        return _store(memory, vector)
    except Exception as error:
        logger.exception("Storing the embedding of memory %s failed", memory["id"])
        _mark_failed(memory, error)
        return None


@transaction.atomic
def _store(memory: dict, vector) -> bool:
    # Store only if the text is still the one we embedded (an edit meanwhile made it due again), and
    # not embedded already: two workers may take the same batch, and one event is enough.
    current = Memory.objects.filter(pk=memory["id"], text_version=memory["text_version"])
    updated = current.exclude(embedding_status=EmbeddingStatus.READY).update(
        embedding=embeddings.to_bytes(vector),
        embedding_model=embeddings.MODEL_NAME,
        embedding_status=EmbeddingStatus.READY,
        embedded_at=timezone.now(),
        embedding_error="",
        embedding_attempts=0,
        embedding_retry_at=None,
    )
    if updated:
        stored = Memory.objects.only("tenant_id", "owner_id", "visibility").get(pk=memory["id"])
        embedding_ready.send(sender=Memory, memory_id=memory["id"], audience=Audience.of(stored))
    return bool(updated)
