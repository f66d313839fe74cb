"""What the memories app does when a Memory is saved: queue its embedding."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from memories.models import Memory
from memories.tasks import request_embeddings


@receiver(post_save, sender=Memory, dispatch_uid="memories.queue_embedding")
def queue_embedding(sender, instance: Memory, raw: bool = False, **kwargs) -> None:
    if instance.needs_embedding and not raw:
        request_embeddings()
