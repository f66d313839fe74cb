"""Background embedding of memories: queued on commit, run by the django-tasks database worker."""

import logging
import os
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone
from django_tasks import task
from django_tasks_db.management.commands.db_worker import Worker

from memories import embeddings
from memories.models import EmbeddingStatus, Memory
from memories.signals import embedding_ready

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


def embed_due_memories(*, batch_size: int = BATCH_SIZE, progress=None) -> int:
    """Embed everything due, a batch at a time; return how many embeddings were stored."""
    stored = 0
    failed_ids: set = set()
    while True:
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
            if vector is None:
                failed_ids.add(memory["id"])
            elif _store(memory, vector):
                stored += 1
        if progress:
            progress(stored)


def _encode_one(memory: dict, text: str):
    try:
        return embeddings.encode([text])[0]
    except Exception as error:
        logger.exception("Embedding memory %s failed", memory["id"])
        _mark_failed(memory, error)
        return None


def _mark_failed(memory: dict, error: Exception) -> None:
    current = Memory.objects.filter(pk=memory["id"], text_version=memory["text_version"])
    attempts = (current.values_list("embedding_attempts", flat=True).first() or 0) + 1
    retry_at = timezone.now() + RETRY_BASE * 2 ** (attempts - 1)
    current.update(
        embedding_status=EmbeddingStatus.FAILED,
        embedding_error=f"{type(error).__name__}: {error}"[:500],
        embedding_attempts=attempts,
        embedding_retry_at=retry_at,
    )
    if attempts < MAX_ATTEMPTS:
        embed_memories.using(run_after=retry_at).enqueue()


@transaction.atomic
def _store(memory: dict, vector) -> bool:
    # Store only if the text is still the one we embedded; an edit meanwhile queued its own run.
    updated = Memory.objects.filter(pk=memory["id"], text_version=memory["text_version"]).update(
        embedding=embeddings.to_bytes(vector),
        embedding_model=embeddings.MODEL_NAME,
        embedding_status=EmbeddingStatus.READY,
        embedded_at=timezone.now(),
        embedding_error="",
        embedding_attempts=0,
        embedding_retry_at=None,
    )
    if updated:
        audience = Memory.objects.values("tenant_id", "owner_id", "visibility").get(pk=memory["id"])
        embedding_ready.send(sender=Memory, memory_id=memory["id"], **audience)
    return bool(updated)


@task()
def embed_memories() -> int:
    """Embed every memory that is due; safe to run twice, since each run takes only what is still due."""
    return embed_due_memories()


def request_embeddings() -> None:
    """Queue a run once the current transaction commits."""
    transaction.on_commit(embed_memories.enqueue, robust=True)


@receiver(post_save, sender=Memory, dispatch_uid="memories.queue_embedding")
def queue_embedding(sender, instance: Memory, raw: bool = False, **kwargs) -> None:
    if instance.needs_embedding and not raw:
        request_embeddings()


def embedding_worker(*, interval: float = 1.0) -> Worker:
    """A django-tasks database worker for this process's embedding runs."""
    return Worker(
        queue_names=["default"],
        interval=interval,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=f"embeddings-{os.getpid()}",
        excluded_queue_names=[],
    )


def run_worker(worker: Worker) -> None:
    """Load the model, queue a run for anything left pending (a dead worker's batch), then work the queue."""
    embeddings.model()  # loaded here, so neither a request nor the first task pays for it
    embed_memories.enqueue()
    worker.run()
