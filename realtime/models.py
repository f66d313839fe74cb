"""The per-tenant event log: every memory event, stored in the transaction of the write that caused it."""

import secrets
import uuid

from django.db import models
from django.utils import timezone

from accounts.models import Tenant


def new_epoch() -> str:
    """A fresh random epoch for a tenant's counter: numbers from an older one cannot be resumed from."""
    return secrets.token_hex(8)


class TenantSequence(models.Model):
    """A tenant's last event sequence number; its row lock, held to commit, orders the tenant's writers."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="+")
    last_seq = models.PositiveBigIntegerField(default=0)
    # Part of the stream's epoch (realtime.log.EPOCH_SQL): a new counter row starts a new numbering.
    epoch = models.CharField(max_length=32, default=new_epoch)

    def __str__(self) -> str:
        return f"{self.tenant_id}#{self.last_seq}"


class Event(models.Model):
    """One memory event as clients receive it, numbered per tenant without gaps (a transactional outbox)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    seq = models.PositiveBigIntegerField()
    event_id = models.UUIDField(default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=50)
    memory_id = models.UUIDField()
    data = models.JSONField()
    # Who could see the memory before and after (realtime.messages.change_audience).
    audience = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "seq"], name="event_tenant_seq")]
        indexes = [models.Index(fields=["tenant", "created_at"])]
        ordering = ["tenant", "seq"]

    def __str__(self) -> str:
        return f"{self.tenant_id}#{self.seq} {self.type}"
