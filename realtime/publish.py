"""Publishing from sync code: at once, or with the events of the current transaction once it commits."""

from typing import Any

from django.db import transaction

from realtime.log import record_event
from realtime.messages import event_message, logged_message
from realtime.node import node


def publish(**event: Any) -> None:
    """Publish from sync code (event_message's arguments) without waiting for Redis; a failure is logged."""
    node().publisher.send([event_message(**event)])


def publish_on_commit(*, wait: bool = False, **event: Any) -> None:
    """Publish once the current transaction commits; a rolled-back transaction publishes nothing.

    The events of one transaction are sent together, in one round trip to Redis. With `wait`
    the commit waits until they are sent (see Publisher.send).
    """
    _send_on_commit(event_message(**event), wait=wait)  # checked against the catalogue now, in the writer's code


def log_and_publish(
    *, tenant_id: int, event_type: str, memory_id: Any, data: dict[str, Any], audience: dict[str, Any]
) -> None:
    """Log a memory event in the current transaction, numbered, and publish it once the transaction commits."""
    event, epoch = record_event(
        tenant_id=tenant_id, event_type=event_type, memory_id=memory_id, data=data, audience=audience
    )
    _send_on_commit(logged_message(event, epoch))


def _send_on_commit(message: dict[str, Any], *, wait: bool = False) -> None:
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        node().publisher.send([message], wait=wait)
        return
    batch = getattr(connection, "puomemo_publish_batch", None)
    if batch is None:
        batch = connection.puomemo_publish_batch = _Batch(connection)
    batch.wait |= wait

    # A plain function rather than a partial: on_commit(robust=True) logs the callback's __qualname__.
    def committed() -> None:
        batch.messages.append(message)

    # Each event's own hook: Django drops it if its savepoint rolls back.
    transaction.on_commit(committed, robust=True)
    batch.send_last()


class _Batch:
    """The events of a connection's current transaction, sent by one hook that runs after theirs."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.messages: list[dict[str, Any]] = []
        self.wait = False  # one of them must be out before the commit returns
        self.hook = (set(), self.send, True)

    def send_last(self) -> None:
        # Django runs commit hooks in order and offers no "after the others" hook: keep
        # this one last in its list. No savepoint ids: a savepoint rollback must not drop
        # it, and it sends only what the surviving hooks added.
        hooks = self.connection.run_on_commit
        if hooks and hooks[-1] is self.hook:
            return
        if self.hook in hooks:
            hooks.remove(self.hook)
        hooks.append(self.hook)

    def send(self) -> None:
        # A commit hook that writes in a transaction of its own may reuse this batch
        # while its hooks run: send what is here now, and what comes later next time.
        if getattr(self.connection, "puomemo_publish_batch", None) is self:
            del self.connection.puomemo_publish_batch
        messages, self.messages = self.messages, []
        if messages:
            node().publisher.send(messages, wait=self.wait)
