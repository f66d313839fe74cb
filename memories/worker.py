"""The embeddings worker: a django-tasks database worker that loads the model first."""

import os

from django_tasks_db.management.commands.db_worker import Worker

from memories import embeddings
from memories.tasks import embed_memories


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
