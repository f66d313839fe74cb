"""Memory writes become events once their transaction commits, whatever path made them."""

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.access import AccessChange, session_digest
from accounts.models import ApiKey, Membership, Tenant
from memories.changes import MemoryChange
from memories.embeddings import MODEL_NAME
from memories.models import Memory
from memories.serializers import memory_data
from memories.signals import embedding_ready
from memories.visibility import Audience
from realtime.messages import actor_data, change_audience
from realtime.models import TenantSequence
from realtime.protocol import ACCESS_CHANGED
from realtime.publish import log_and_publish, publish_on_commit


def _publish(change: MemoryChange, event_type: str, data: dict) -> None:
    # Everything is captured now: after a delete the pk is gone, after a save the
    # loaded values are reset, and a rolled-back transaction never publishes.
    # A memory moved to another tenant (admin can) leaves one tenant and enters the other.
    for tenant_id in {audience.tenant_id for audience in (change.before, change.after) if audience is not None}:
        log_and_publish(
            tenant_id=tenant_id,
            event_type=event_type,
            memory_id=change.memory.pk,
            data={**data, **actor_data(change.actor)},
            audience=change_audience(change.before, change.after, change.before_title),
        )


@receiver(post_save, sender=Tenant, dispatch_uid="realtime.tenant_saved")
def tenant_saved(sender, instance: Tenant, created: bool, raw: bool = False, **kwargs) -> None:
    # Its event counter from the start, so that no write pays for making it.
    if created and not raw:
        TenantSequence.objects.get_or_create(tenant_id=instance.pk)


@receiver(post_save, sender=Memory, dispatch_uid="realtime.memory_saved")
def memory_saved(sender, instance: Memory, created: bool, raw: bool = False, **kwargs) -> None:
    if raw:
        return
    trash = instance.trash_changed()
    if trash == "trashed":  # to clients, a delete: the memory is gone for every read
        _publish_deleted(instance)
        return
    if trash == "restored":
        change = MemoryChange.restored(instance)
        _publish(change, "memory.restored", {"memory": memory_data(instance)})
        return
    if instance.in_trash:
        return  # a write to a memory in the trash is news to no one
    change = MemoryChange.saved(instance, created=created)
    if created:
        _publish(change, "memory.created", {"memory": memory_data(instance)})
    elif change.is_news:  # saves that touch only the embedding are not news to clients
        _publish(change, "memory.updated", {"memory": memory_data(instance), "changes": change.changes})


@receiver(post_delete, sender=Memory, dispatch_uid="realtime.memory_deleted")
def memory_deleted(sender, instance: Memory, **kwargs) -> None:
    if not instance.in_trash:  # a memory purged from the trash was announced deleted when it went there
        _publish_deleted(instance)


def _publish_deleted(instance: Memory) -> None:
    change = MemoryChange.deleted(instance)
    _publish(change, "memory.deleted", {"memory_id": str(instance.id), "title": instance.title})


@receiver(embedding_ready, dispatch_uid="realtime.embedding_ready")
def memory_embedded(sender, memory_id, audience: Audience, **kwargs) -> None:
    log_and_publish(
        tenant_id=audience.tenant_id,
        event_type="memory.embedding_complete",
        memory_id=memory_id,
        data={"memory_id": str(memory_id), "embedding_model": MODEL_NAME},
        audience=change_audience(audience, audience),
    )


# --- Access changes: open connections follow them at once, on every instance ---


def _publish_access(change: AccessChange, *tenant_ids: int | None) -> None:
    # In the tenant's group, so that it is ordered with the tenant's memory events: a demoted
    # member gets no team memory written after the demotion committed. Access changes are not
    # logged, so the commit waits until Redis has this one, before any later write can publish.
    for tenant_id in {t for t in tenant_ids if t is not None}:
        publish_on_commit(
            tenant_id=tenant_id,
            event_type=ACCESS_CHANGED,
            channel=None,
            data=change.as_dict(),
            audience=None,
            wait=True,
        )


def _tenant_of(user_id: int) -> int | None:
    return Membership.objects.filter(user_id=user_id).values_list("tenant_id", flat=True).first()


@receiver(post_save, sender=Membership, dispatch_uid="realtime.membership_saved")
def membership_saved(sender, instance: Membership, raw: bool = False, **kwargs) -> None:
    if not raw:
        # The tenant it leaves, if it moved, is told too. One not loaded from the database
        # names none: the access-change trigger and the log poll close those sockets then.
        left = getattr(instance, "loaded_tenant_id", None)
        _publish_access(AccessChange.of_membership(instance), instance.tenant_id, left)
        instance.loaded_tenant_id = instance.tenant_id


@receiver(post_delete, sender=Membership, dispatch_uid="realtime.membership_deleted")
def membership_deleted(sender, instance: Membership, **kwargs) -> None:
    _publish_access(AccessChange(user_id=instance.user_id), instance.tenant_id)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="realtime.user_saved")
def user_saved(sender, instance, raw: bool = False, **kwargs) -> None:
    if not raw and not instance.is_active:
        _publish_access(AccessChange(user_id=instance.pk, active=False), _tenant_of(instance.pk))


@receiver(post_save, sender=ApiKey, dispatch_uid="realtime.api_key_saved")
def api_key_saved(sender, instance: ApiKey, raw: bool = False, **kwargs) -> None:
    if not raw and instance.revoked_at is not None:
        change = AccessChange(user_id=instance.user_id, revoked_key_id=instance.pk)
        _publish_access(change, _tenant_of(instance.user_id))


@receiver(user_logged_out, dispatch_uid="realtime.user_logged_out")
def user_logged_out_(sender, request, user, **kwargs) -> None:
    # Sent before the session is flushed: its sockets close now, not at the next re-check.
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        _publish_access(AccessChange(user_id=user.pk, ended_session=session_digest(session_key)), _tenant_of(user.pk))
