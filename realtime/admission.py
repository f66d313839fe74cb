"""The admission bound: how many new connections one process sets up at once, and how many may wait for that."""

import asyncio

from django.conf import settings


class Admission:
    """A storm's bound, one per event loop: `concurrency` set-ups at once, `queue` more waiting `wait` s at most."""

    def __init__(self, concurrency: int, queue: int, wait: float) -> None:
        # A set-up: the token, the caps, the feed, presence. Past the queue or the wait: refused (1013).
        self.slots = asyncio.Semaphore(concurrency)
        self.queue = queue
        self.wait = wait
        self.waiting = 0

    @classmethod
    def from_settings(cls) -> "Admission":
        return cls(
            settings.PUOMEMO_WS_ADMISSION_CONCURRENCY,
            settings.PUOMEMO_WS_ADMISSION_QUEUE,
            settings.PUOMEMO_WS_ADMISSION_WAIT_SECONDS,
        )

    async def enter(self) -> bool:
        """Wait for a turn to set a connection up; False when the queue is full or the wait ran out (close 1013)."""
        if self.slots.locked() and self.waiting >= self.queue:
            return False
        self.waiting += 1
        try:
            await asyncio.wait_for(self.slots.acquire(), self.wait)
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1
        return True

    def leave(self) -> None:
        """The connection is set up (or refused): the next one's turn."""
        self.slots.release()
