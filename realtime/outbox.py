"""One connection's outgoing frames, in order: straight to the socket under daphne, else through a bounded queue."""

import asyncio
from collections.abc import Awaitable, Callable

from django.conf import settings

from realtime import metrics
from realtime.daphne import Connection

Frame = str | bytes

# How often a paced sender looks again whether the client has read enough for the next frame.
WRITE_WAIT_SECONDS = 0.005


class Outbox:
    """A connection's frames in send order; what waits unsent is bounded in bytes (daphne) or frames (the queue)."""

    __slots__ = ("connection", "overflow", "queue", "send", "writer", "writing")

    def __init__(
        self, connection: Connection | None, send: Callable[[Frame], Awaitable[None]], overflow: Callable[[], None]
    ) -> None:
        self.connection = connection  # daphne's (realtime/daphne.py), from the scope; None under a test communicator
        self.send = send  # the ASGI send, for the writer task
        self.overflow = overflow  # called when the client does not read: the connection closes
        self.queue: asyncio.Queue | None = None  # made when a frame first has to wait: an idle connection holds none
        self.writer: asyncio.Task | None = None
        self.writing = False  # the writer holds a frame from the queue that it has not sent yet

    def put(self, frame: Frame) -> bool:
        """Send a frame now (daphne) or queue it for the writer task; returns whether it was sent now."""
        if self.connection is not None:
            # No task wake-up and no send chain per frame; daphne's unsent-bytes limits drop a client that lags.
            self.connection.send_text(frame)
            return True
        try:
            self._queue().put_nowait(frame)
        except asyncio.QueueFull:
            self.overflow()  # a client that does not read must not grow server memory
        return False

    async def put_paced(self, frame: Frame) -> bool:
        """Send a frame of a burst the client asked for (a replay) as fast as the client reads.

        Past half of PUOMEMO_WS_MAX_BUFFERED_BYTES unsent it waits; a client that reads
        nothing for PUOMEMO_WS_STALL_SECONDS is dropped like any client that stops
        reading, and False is returned.
        """
        high_water = settings.PUOMEMO_WS_MAX_BUFFERED_BYTES // 2
        loop = asyncio.get_running_loop()
        least, since = None, loop.time()
        while (pending := self._pending()) > high_water or self.writing:
            if least is None or pending < least:
                least, since = pending, loop.time()  # the client read something: wait on
            elif loop.time() - since > settings.PUOMEMO_WS_STALL_SECONDS:
                if self.connection is not None:
                    self.connection.drop()  # aborts the TCP connection; daphne then reports the disconnect
                else:
                    self.overflow()
                return False
            await asyncio.sleep(WRITE_WAIT_SECONDS)
        self.put(frame)
        return True

    def _pending(self) -> int:
        """What the client has yet to take: bytes unsent, and frames queued counted as past the high-water mark."""
        queued = self.queue.qsize() if self.queue is not None else 0
        unsent = self.connection.unsent_bytes() if self.connection is not None else 0
        return unsent + queued * settings.PUOMEMO_WS_MAX_BUFFERED_BYTES

    def _queue(self) -> asyncio.Queue:
        if self.queue is None:
            self.queue = asyncio.Queue(maxsize=settings.PUOMEMO_WS_OUTBOUND_QUEUE)
            self.writer = asyncio.get_running_loop().create_task(self._write())
        return self.queue

    async def _write(self) -> None:
        while True:
            frame = await self.queue.get()
            self.writing = True
            try:
                await self.send(frame)
            finally:
                self.writing = False  # else direct sends would wait forever behind a dead writer
            metrics.messages_sent.inc()

    def close(self) -> None:
        """Stop the writer; frames still queued are dropped with the connection."""
        if self.writer is not None:
            self.writer.cancel()
