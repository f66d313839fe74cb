"""The event log: numbering and storing memory events in the writer's transaction, reading them back, pruning."""

from datetime import timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from realtime.models import Event, TenantSequence, new_epoch


class Position(NamedTuple):
    """Where a tenant's stream stands: its last committed seq, and the epoch those numbers belong to."""

    seq: int
    epoch: str | None  # None before the tenant has a counter (no event yet)


def epoch_sql() -> str:
    """The SQL for a counter row's epoch: its stored random value and, on PostgreSQL, the table's file node."""
    # A dump carries the stored value, but a restore writes the table anew (DROP and CREATE, or TRUNCATE):
    # its file node changes, so a restored counter's numbers are never mistaken for those clients saw before.
    if connection.vendor == "postgresql":
        table = TenantSequence._meta.db_table
        return f"epoch || '.' || pg_relation_filenode('{table}')::text"
    return "epoch"


def record_event(
    *, tenant_id: int, event_type: str, memory_id: Any, data: dict[str, Any], audience: dict[str, Any]
) -> tuple[Event, str]:
    """Store an event with the tenant's next sequence number, inside the caller's transaction; and its epoch."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("Events are recorded in the transaction of the write that causes them.")
    event = Event(tenant_id=tenant_id, type=event_type, memory_id=memory_id, data=data, audience=audience)
    # The UPDATE locks the tenant's counter row until commit: the tenant's writers take turns,
    # so numbers are given in commit order and a rolled-back write gives its number back.
    epoch = _number_and_insert(event)
    if epoch is None:  # the tenant's first event
        TenantSequence.objects.bulk_create([TenantSequence(tenant_id=tenant_id)], ignore_conflicts=True)
        epoch = _number_and_insert(event)
    return event, epoch


# One statement for the increment and its result (PostgreSQL, and SQLite since 3.35).
_INCREMENT = "UPDATE {counter} SET last_seq = last_seq + 1 WHERE tenant_id = %s RETURNING last_seq, {epoch} AS epoch"


def _number_and_insert(event: Event) -> str | None:
    # Numbered and stamped under the counter's lock, so that seq order is also time order: pruning
    # by age must never keep an event and delete a later one. On PostgreSQL the increment and the
    # INSERT are one statement: the lock, held until commit, spans one round trip less.
    # None when the tenant has no counter yet.
    increment = _INCREMENT.format(counter=connection.ops.quote_name(TenantSequence._meta.db_table), epoch=epoch_sql())
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(increment, [event.tenant_id])
            row = cursor.fetchone()
        if row is None:
            return None
        (event.seq, epoch), event.created_at = row, timezone.now()
        event.save(force_insert=True)
        return epoch
    quote = connection.ops.quote_name
    fields = [f for f in Event._meta.concrete_fields if not f.primary_key and f.name not in ("seq", "created_at")]
    columns = ", ".join(quote(f.column) for f in fields)
    values = [f.get_db_prep_save(getattr(event, f.attname), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH next AS ({increment}),"  # noqa: S608
            f" row AS (INSERT INTO {quote(Event._meta.db_table)} (seq, created_at, {columns})"
            f" SELECT last_seq, clock_timestamp(), {', '.join(['%s'] * len(fields))} FROM next"
            f" RETURNING id, seq, created_at)"
            f" SELECT row.id, row.seq, row.created_at, next.epoch FROM row, next",
            [event.tenant_id, *values],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    event.id, event.seq, event.created_at, epoch = row
    event._state.adding, event._state.db = False, connection.alias
    return epoch


def position(tenant_id: int) -> Position:
    """The tenant's last committed sequence number (0 before its first event) and its epoch."""
    table = connection.ops.quote_name(TenantSequence._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT last_seq, {epoch_sql()} FROM {table} WHERE tenant_id = %s", [tenant_id])  # noqa: S608
        row = cursor.fetchone()
    return Position(*row) if row else Position(0, None)


def renew_epoch(tenant_id: int, epoch: str) -> Position:
    """Give the tenant's counter a new epoch unless another process did since it was `epoch`; where it stands now."""
    table = connection.ops.quote_name(TenantSequence._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET epoch = %s WHERE tenant_id = %s AND {epoch_sql()} = %s",  # noqa: S608
            [new_epoch(), tenant_id, epoch],
        )
    return position(tenant_id)


def stream_position(tenant_id: int) -> dict[str, Any]:
    """The position a list or snapshot reflects, as responses carry it: `{seq, epoch}`."""
    return position(tenant_id)._asdict()


def current_positions(tenant_ids: list[int]) -> dict[int, Position]:
    """The position of each tenant's stream that has a counter."""
    if not tenant_ids:
        return {}
    table = connection.ops.quote_name(TenantSequence._meta.db_table)
    marks = ", ".join(["%s"] * len(tenant_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tenant_id, last_seq, {epoch_sql()} FROM {table} WHERE tenant_id IN ({marks})",  # noqa: S608
            tenant_ids,
        )
        return {tenant_id: Position(seq, epoch) for tenant_id, seq, epoch in cursor.fetchall()}


def events_after(tenant_id: int, seq: int, *, before: int | None = None, limit: int | None = None) -> list[Event]:
    """The tenant's logged events after `seq` (and before `before`), in order."""
    events = Event.objects.filter(tenant_id=tenant_id, seq__gt=seq).order_by("seq")
    if before is not None:
        events = events.filter(seq__lt=before)
    return list(events[:limit] if limit else events)


def resync_reason(tenant_id: int, last_seq: int, epoch: str | None = None) -> tuple[str | None, Position]:
    """Why a client at `last_seq` of `epoch` cannot catch up from the log (None if it can), and where the stream is."""
    current = position(tenant_id)
    # Without an epoch (an older client) only the numbers are judged.
    if epoch is not None and epoch != current.epoch:
        return "epoch", current
    if last_seq > current.seq:
        return "ahead", current
    oldest = Event.objects.filter(tenant_id=tenant_id).aggregate(oldest=Min("seq"))["oldest"]
    if last_seq < current.seq and (oldest is None or oldest > last_seq + 1):
        return "expired", current
    return None, current


def prune_events() -> int:
    """Delete events beyond retention: kept are a tenant's last N events, and everything younger than H hours."""
    keep = settings.PUOMEMO_EVENT_LOG_MIN_EVENTS
    cutoff = timezone.now() - timedelta(hours=settings.PUOMEMO_EVENT_LOG_MIN_HOURS)
    deleted = 0
    for row in Event.objects.values("tenant_id").annotate(last=Max("seq")):
        old = Event.objects.filter(tenant_id=row["tenant_id"], seq__lte=row["last"] - keep, created_at__lt=cutoff)
        deleted += old.delete()[0]
    return deleted
