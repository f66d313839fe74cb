"""Memory writes become events once their transaction commits, whatever path made them."""

from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from memories.embeddings import MODEL_NAME
from memories.models import Memory
from memories.signals import embedding_ready
from realtime.events import MEMORIES, memory_audience, memory_payload, publish


def _actor(memory: Memory) -> dict[str, str]:
    # Services and admin set `memory.actor`; a bare ORM write is credited to the owner.
    actor = getattr(memory, "actor", None)
    if actor is not None:
        return {"user_id": str(actor.user_id), "user_name": actor.user_name}
    owner = memory.owner
    return {"user_id": str(owner.pk), "user_name": owner.get_full_name() or owner.get_username()}


def _publish_on_commit(memory: Memory, event_type: str, data: dict) -> None:
    # Everything is captured now: after a delete the pk is gone, after a save the
    # loaded values are reset, and a rolled-back transaction never runs this.
    event = partial(
        publish,
        tenant_id=memory.tenant_id,
        event_type=event_type,
        channel=MEMORIES,
        data=data,
        audience=memory_audience(memory),
    )
    transaction.on_commit(event, robust=True)


@receiver(post_save, sender=Memory, dispatch_uid="realtime.memory_saved")
def memory_saved(sender, instance: Memory, created: bool, raw: bool = False, **kwargs) -> None:
    if raw:
        return
    if created:
        _publish_on_commit(instance, "memory.created", {"memory": memory_payload(instance), **_actor(instance)})
        return
    changes = instance.client_changes()
    if changes:  # saves that touch only the embedding are not news to clients
        data = {"memory": memory_payload(instance), **_actor(instance), "changes": changes}
        _publish_on_commit(instance, "memory.updated", data)


@receiver(post_delete, sender=Memory, dispatch_uid="realtime.memory_deleted")
def memory_deleted(sender, instance: Memory, **kwargs) -> None:
    data = {"memory_id": str(instance.id), "title": instance.title, **_actor(instance)}
    _publish_on_commit(instance, "memory.deleted", data)


@receiver(embedding_ready, dispatch_uid="realtime.embedding_ready")
def memory_embedded(sender, memory_id, tenant_id: int, owner_id: int, visibility: str, **kwargs) -> None:
    event = partial(
        publish,
        tenant_id=tenant_id,
        event_type="memory.embedding_complete",
        channel=MEMORIES,
        data={"memory_id": str(memory_id), "embedding_model": MODEL_NAME},
        audience={"tenant_id": tenant_id, "owner_id": owner_id, "visibility": visibility},
    )
    transaction.on_commit(event, robust=True)
