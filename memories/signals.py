"""Signals of the memories domain that other apps observe."""

from django.dispatch import Signal

# Sent inside the transaction that stored a memory's embedding, with
# memory_id, tenant_id, owner_id and visibility.
embedding_ready = Signal()
