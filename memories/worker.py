"""The embeddings worker: it loads the model, then embeds whatever is due, and looks again every `interval` seconds."""

import logging
import threading

from django.db import close_old_connections

from memories import embeddings
from memories.embedding_service import embed_due_memories

logger = logging.getLogger(__name__)


class EmbeddingWorker:
    """Polls for due memories until stopped; a memory's own status is its place in the queue."""

    # A poll rather than a task per write: a write queues nothing (a task row cost each create
    # a sixth of its CPU, under the tenant's counter lock), and the poll finds every due memory,
    # however it became due (a create, an edit, a restore, a bulk import, a retry's time come).
    def __init__(self, *, interval: float = 1.0) -> None:
        self.interval = interval
        self._stopped = threading.Event()

    def stop(self) -> None:
        """End the loop after the batch in hand."""
        self._stopped.set()

    def run(self) -> None:
        """Load the model, then embed what is due every `interval` seconds until stopped."""
        embeddings.model()  # loaded here, so neither a request nor the first poll pays for it
        while not self._stopped.is_set():
            close_old_connections()  # a connection the database dropped meanwhile is replaced
            try:
                embed_due_memories(stop=self._stopped)
            except Exception:
                # The database gone, say: what is due stays due, and the next poll takes it.
                logger.exception("Embedding poll failed; trying again in %.1f s", self.interval)
            finally:
                close_old_connections()
            self._stopped.wait(self.interval)
