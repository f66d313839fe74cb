"""Memory writes become events once their transaction commits, whatever path made them."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.principal import Actor
from memories.embeddings import MODEL_NAME
from memories.models import Memory
from memories.signals import embedding_ready
from memories.visibility import Audience
from realtime.events import MEMORIES, actor_data, memory_payload, publish_on_commit


def _actor(memory: Memory) -> dict[str, str]:
    # Services and admin set `memory.actor`; a bare ORM write is credited to the owner.
    return actor_data(memory.actor or Actor.of(memory.owner))


def _memory_event(memory: Memory, event_type: str, data: dict) -> None:
    # Everything is captured now: after a delete the pk is gone, after a save the
    # loaded values are reset, and a rolled-back transaction never publishes.
    publish_on_commit(
        tenant_id=memory.tenant_id, event_type=event_type, channel=MEMORIES, data=data, audience=Audience.of(memory)
    )


@receiver(post_save, sender=Memory, dispatch_uid="realtime.memory_saved")
def memory_saved(sender, instance: Memory, created: bool, raw: bool = False, **kwargs) -> None:
    if raw:
        return
    if created:
        _memory_event(instance, "memory.created", {"memory": memory_payload(instance), **_actor(instance)})
        return
    changes = instance.client_changes()
    if changes:  # saves that touch only the embedding are not news to clients
        data = {"memory": memory_payload(instance), **_actor(instance), "changes": changes}
        _memory_event(instance, "memory.updated", data)


@receiver(post_delete, sender=Memory, dispatch_uid="realtime.memory_deleted")
def memory_deleted(sender, instance: Memory, **kwargs) -> None:
    data = {"memory_id": str(instance.id), "title": instance.title, **_actor(instance)}
    _memory_event(instance, "memory.deleted", data)


@receiver(embedding_ready, dispatch_uid="realtime.embedding_ready")
def memory_embedded(sender, memory_id, audience: Audience, **kwargs) -> None:
    publish_on_commit(
        tenant_id=audience.tenant_id,
        event_type="memory.embedding_complete",
        channel=MEMORIES,
        data={"memory_id": str(memory_id), "embedding_model": MODEL_NAME},
        audience=audience,
    )
