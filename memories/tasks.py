"""The embedding task of the django-tasks queue; the work itself is in memories.embedding_service."""

from django.db import transaction
from django_tasks import task

from memories.embedding_service import embed_due_memories


@task()
def embed_memories() -> int:
    """Embed every memory that is due; safe to run twice, since each run takes only what is still due."""
    return embed_due_memories(schedule_retry=lambda at: embed_memories.using(run_after=at).enqueue())


def request_embeddings() -> None:
    """Queue a run once the current transaction commits."""
    transaction.on_commit(embed_memories.enqueue, robust=True)
