"""What the memories app does when a Memory is saved: queue its embedding."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from memories.models import EmbeddingStatus, Memory
from memories.tasks import request_embeddings


@receiver(post_save, sender=Memory, dispatch_uid="memories.queue_embedding")
def queue_embedding(sender, instance: Memory, created: bool, raw: bool = False, **kwargs) -> None:
    # post_save runs before save() takes its new snapshot: client_changes() still tells.
    if raw or instance.in_trash:
        return  # the worker skips the trash; a restored memory not yet embedded is queued again
    restored_unembedded = instance.trash_changed() and instance.embedding_status != EmbeddingStatus.READY
    if created or instance.text_changed() or restored_unembedded:
        request_embeddings()
