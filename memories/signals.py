"""Signals of the memories domain that other apps observe."""

from django.dispatch import Signal

# Sent inside the transaction that stored a memory's embedding, with
# memory_id and audience (a memories.visibility.Audience).
embedding_ready = Signal()
