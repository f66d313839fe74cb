"""The embedding task of the django-tasks queue; the work itself is in memories.embedding_service."""

from django_tasks import task

from memories.embedding_service import embed_due_memories


@task()
def embed_memories() -> int:
    """Embed every memory that is due; safe to run twice, since each run takes only what is still due."""
    return embed_due_memories(schedule_retry=lambda at: embed_memories.using(run_after=at).enqueue())


def request_embeddings() -> None:
    """Queue a run in the current transaction: the worker sees it once the write commits, never if it rolls back."""
    # In the write's own transaction rather than after it: a second commit of its own made each
    # create wait for a second flush to disk (docs/performance.md).
    embed_memories.enqueue()
