"""Sending event messages to the tenant groups of every server process: from async code, and from sync code through
the process's publisher."""

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer

from realtime import metrics
from realtime.messages import event_message
from realtime.protocol import TENANT_UPDATES, tenant_group
from realtime.redis_clients import log_failure

logger = logging.getLogger(__name__)

# How long a publish that must wait (an access change) waits for Redis at most; longer than a
# Redis command's own timeouts (settings.REDIS_OPTIONS), so those answer first.
PUBLISH_TIMEOUT_SECONDS = 10


async def apublish(**event: Any) -> bool:
    """Send an event (event_message's arguments) to every server process holding connections of its tenant.

    Returns whether it was sent. A failure (Redis down) is logged and counted,
    never raised: the write that caused the event has committed, and its caller
    must not report it as failed (a logged event is delivered from the log).
    """
    return (await asend([event_message(**event)]))[0]


async def apublish_presence(
    event_type: str, *, tenant_id: int, user_id: int, user_name: str, connection_id: str, origin: str | None
) -> bool:
    """Tell the tenant a connection joined or left (tenant.user_joined / tenant.user_left)."""
    data = {"user_id": str(user_id), "user_name": user_name, "connection_id": connection_id}
    return await apublish(
        tenant_id=tenant_id, event_type=event_type, channel=TENANT_UPDATES, data=data, audience=None, origin=origin
    )


async def asend(messages: list[dict[str, Any]]) -> list[bool]:
    """Send built messages to their tenants' groups; logs and counts each failure, returns which were sent."""
    # Concurrent group sends: the Redis layer (realtime/layers.py) pipelines them into one round trip.
    layer = get_channel_layer()
    if len(messages) == 1:
        results = [await _outcome(layer.group_send(tenant_group(messages[0]["tenant_id"]), messages[0]))]
    else:
        results = await asyncio.gather(
            *(layer.group_send(tenant_group(message["tenant_id"]), message) for message in messages),
            return_exceptions=True,
        )
    sent = []
    for message, result in zip(messages, results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):
            log_failure(logger, result, "Publishing %s for tenant %s failed", message["event"], message["tenant_id"])
            metrics.publish_failures.labels(event=message["event"]).inc()
        sent.append(not isinstance(result, BaseException))
    return sent


async def _outcome(sending: Any) -> Any:
    try:
        return await sending
    except Exception as error:
        return error


class Publisher:
    """Sends for sync code (request threads, the embeddings worker) without making it wait for Redis.

    With Redis it owns an event loop in a thread of its own, whose connection stays open;
    on the embedded layer it sends on the loop that serves this process's connections.
    Messages leave in the order they were given (a demotion before the next memory event),
    what waits meanwhile going together in one round trip.
    """

    def __init__(self, listening_loop: Callable[[], asyncio.AbstractEventLoop | None]) -> None:
        self.listening_loop = listening_loop
        self._loop: tuple[int, asyncio.AbstractEventLoop] | None = None
        self._lock = threading.Lock()
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()
        self.unsent = 0  # messages handed over and not sent (or failed) yet

    def send(self, messages: list[dict[str, Any]], *, wait: bool = False) -> None:
        """Queue the messages and return at once; a failure is logged and counted, and the log heals it.

        With `wait`, return once they are sent (or PUBLISH_TIMEOUT_SECONDS passed): for access changes,
        which no log orders before the memory events written after them on other processes.
        """
        loop = self._target()
        if loop is None:
            return  # the embedded layer with nobody listening here: other processes read the log
        with self._lock:
            queue = self._queues.get(loop)
            if queue is None:
                queue = self._queues[loop] = _Queue(loop, self._sent)
            self.unsent += len(messages)
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        sent = concurrent.futures.Future()
        if on_loop:  # sync code called on the loop itself: it cannot wait for the loop
            queue.add(messages, sent)
            return
        loop.call_soon_threadsafe(queue.add, messages, sent)
        if wait:
            try:
                sent.result(PUBLISH_TIMEOUT_SECONDS)
            except concurrent.futures.TimeoutError:
                logger.error("Publishing %d event(s) took over %s s; going on", len(messages), PUBLISH_TIMEOUT_SECONDS)

    def wait(self, timeout: float = 10) -> None:
        """Wait until everything handed over so far has been sent or has failed (tests; a process about to exit)."""
        deadline = time.monotonic() + timeout
        while self.unsent and time.monotonic() < deadline:
            time.sleep(0.005)

    def _sent(self, count: int) -> None:
        with self._lock:
            self.unsent -= count

    def _target(self) -> asyncio.AbstractEventLoop | None:
        if isinstance(get_channel_layer(), InMemoryChannelLayer):
            # Only this process's own event loop (daphne's) has listeners on the embedded layer.
            return self.listening_loop()
        with self._lock:
            if self._loop is None or self._loop[0] != os.getpid():  # a forked child starts its own
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="puomemo-publisher", daemon=True).start()
                self._loop = (os.getpid(), loop)
            return self._loop[1]


class _Queue:
    """The messages waiting to be sent on one event loop, sent by one task in the order they came."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sent: Callable[[int], None]) -> None:
        self.loop, self.sent = loop, sent
        self.waiting: deque[tuple[list[dict[str, Any]], concurrent.futures.Future]] = deque()
        self.task: asyncio.Task | None = None

    def add(self, messages: list[dict[str, Any]], done: concurrent.futures.Future) -> None:
        self.waiting.append((messages, done))
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        while self.waiting:
            batches = list(self.waiting)
            self.waiting.clear()
            messages = [message for batch, _ in batches for message in batch]
            try:
                await asend(messages)
            finally:
                self.sent(len(messages))
                for _, done in batches:
                    done.set_result(None)
