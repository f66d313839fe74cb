"""A per-process, per-tenant cache of embedding vectors, topped up from the database on each search."""

import threading
from datetime import datetime, timedelta

import numpy as np
from django.utils import timezone

from memories import embeddings
from memories.models import EmbeddingStatus, Memory

# Embeddings are stamped before their transaction commits: a refresh re-reads
# what was stamped this long before the previous one, so no late commit is missed.
COMMIT_LAG = timedelta(seconds=30)


class TenantVectors:
    """The vectors of one tenant's ready memories (possibly stale: callers re-check rows in SQL)."""

    def __init__(self, tenant_id: int) -> None:
        self.tenant_id = tenant_id
        self.ids: list = []
        self.row_of: dict = {}
        self.matrix = np.empty((0, embeddings.DIMENSIONS), dtype=np.float32)
        self.refreshed_at: datetime | None = None
        self.lock = threading.Lock()

    def refresh(self) -> None:
        """Load vectors stored since the last refresh."""
        # Those in the trash too: a restore needs no reload, and the search's SQL re-check leaves them out.
        rows = Memory.all_objects.filter(
            tenant_id=self.tenant_id, embedding_status=EmbeddingStatus.READY, embedding__isnull=False
        )
        if self.refreshed_at is not None:
            rows = rows.filter(embedded_at__gte=self.refreshed_at - COMMIT_LAG)
        self.refreshed_at = timezone.now()
        new_ids, blobs = [], []
        for memory_id, blob in rows.values_list("id", "embedding").iterator(2000):
            if memory_id in self.row_of:
                self.matrix[self.row_of[memory_id]] = embeddings.from_bytes(blob)
            else:
                new_ids.append(memory_id)
                blobs.append(blob)
        if new_ids:
            added = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(new_ids), embeddings.DIMENSIONS)
            self.row_of.update((memory_id, len(self.ids) + i) for i, memory_id in enumerate(new_ids))
            self.ids.extend(new_ids)
            self.matrix = np.vstack([self.matrix, added])

    def ranked(self, query_vector: np.ndarray) -> tuple[list, np.ndarray, np.ndarray]:
        """All cached ids with their cosine scores, and the row order from best to worst."""
        with self.lock:
            self.refresh()
            scores = self.matrix @ query_vector
            return self.ids, scores, np.argsort(-scores)


_tenants: dict[int, TenantVectors] = {}
_tenants_lock = threading.Lock()


def tenant_vectors(tenant_id: int) -> TenantVectors:
    """The process's vector cache of a tenant."""
    with _tenants_lock:
        if tenant_id not in _tenants:
            _tenants[tenant_id] = TenantVectors(tenant_id)
        return _tenants[tenant_id]
