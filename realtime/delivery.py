"""What one connection is sent of its tenant's event stream: live events, a resume's replay, and the order between
them (each event once, in `seq` order)."""

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.principal import Principal
from realtime.frames import encode
from realtime.log import Position, resync_reason
from realtime.outbox import Outbox
from realtime.rendering import EventFrames
from realtime.replay import replay

logger = logging.getLogger(__name__)

# A resume's first page: small, since its events' sizes are not known yet (later pages adapt).
FIRST_PAGE_EVENTS = 8

# Resume pages are read and rendered on threads of their own, not the one thread all connections share; few and
# long-lived, so a reconnect storm's resumes hold at most this many of the process's pooled database connections.
# (The loop's default executor would do, but its threads come and go with their loop, and a thread that ends with
# a connection open, as under channels' test communicators, which skip the close, never hands it back.)
REPLAY_THREADS = 2
_replay_threads = ThreadPoolExecutor(REPLAY_THREADS, thread_name_prefix="replay")


class ResumeRunning(Exception):
    """A resume was asked for while the connection's previous one still runs."""


class Delivery:
    """One connection's position in its tenant's stream, and the frames that keep it exactly-once and in order."""

    __slots__ = (
        "encoding",
        "held",
        "live_from",
        "live_upto",
        "outbox",
        "overflow",
        "replayed_upto",
        "resuming",
        "viewer",
    )

    def __init__(
        self, outbox: Outbox, viewer: Callable[[], Principal], encoding: str, overflow: Callable[[], None]
    ) -> None:
        self.outbox = outbox
        self.viewer = viewer  # the connection's principal now: a role change applies from the next event
        self.encoding = encoding
        self.overflow = overflow  # too many live events held behind a replay: the connection closes
        self.held: list[tuple[dict[str, Any], EventFrames]] | None = None  # live events that wait for a replay
        self.resuming: asyncio.Task | None = None
        self.replayed_upto = 0  # a resume sent the events up to this seq; the feed may not have reached it yet
        self.live_from: int | None = None  # the first logged event offered live: a later resume replays up to it
        self.live_upto = 0  # the last logged event offered live

    def offer(self, event: dict[str, Any], frames: EventFrames) -> bool:
        """Send a live event's frame if the viewer may see it; returns whether a frame was sent now."""
        seq = event["seq"]
        if seq is not None:
            if seq <= self.replayed_upto:
                return False  # sent by the replay already
            self.live_from = self.live_from or seq
            self.live_upto = seq
        if self.held is not None:
            if len(self.held) >= settings.PUOMEMO_WS_OUTBOUND_QUEUE:
                self.overflow()
            self.held.append((event, frames))
            return False
        frame = frames.frame_for(self.viewer(), self.encoding)
        return frame is not None and self.outbox.put(frame)

    def resume(self, tenant_id: int, last_seq: int, epoch: str | None = None) -> None:
        """Start replaying the logged events after last_seq beside the connection's other work; live ones wait.

        As the protocol says, a resume replays whether or not the connection subscribed to `memories`.
        A position of another epoch (a new counter, a restored database) cannot be resumed from.
        """
        if self.held is not None:
            raise ResumeRunning
        self.held = []
        self.resuming = asyncio.get_running_loop().create_task(self._resume(tenant_id, last_seq, epoch))

    def renumbered(self, current: Position) -> None:
        """The stream was numbered anew: what the connection was sent may be gone; it reloads from `current`."""
        self.replayed_upto, self.live_from, self.live_upto = 0, None, 0
        self._emit("resync_required", {"reason": "epoch", "current_seq": current.seq, "epoch": current.epoch})

    def stop(self) -> None:
        """The connection is gone: stop a resume that runs."""
        if self.resuming is not None:
            self.resuming.cancel()

    async def _resume(self, tenant_id: int, last_seq: int, epoch: str | None) -> None:
        # An earlier resume on this connection sent the events up to replayed_upto: not again.
        last_seq = max(last_seq, self.replayed_upto)
        try:
            reason, current = await database_sync_to_async(resync_reason)(tenant_id, last_seq, epoch)
            if reason is None and current.seq - last_seq > settings.PUOMEMO_WS_RESUME_MAX_EVENTS:
                reason = "too_many"  # a client away this long reloads the list faster than it replays
            if reason is not None:
                self._emit("resync_required", {"reason": reason, "current_seq": current.seq, "epoch": current.epoch})
                return
            upto = await self._replay(last_seq, current.epoch)
            if upto is not None:
                self._emit("resumed", {"last_seq": max(upto, self.live_upto), "epoch": current.epoch})
        except Exception:
            logger.exception("Resuming a WebSocket connection failed")
            self.overflow()
        finally:
            # Live events that came meanwhile, after the replay and without what it sent.
            held, self.held = self.held, None
            for event, frames in held:
                if event["seq"] is None or event["seq"] > self.replayed_upto:
                    frame = frames.frame_for(self.viewer(), self.encoding)
                    if frame is not None:
                        self.outbox.put(frame)

    async def _replay(self, after: int, epoch: str | None) -> int | None:
        """Send the log after `after` page by page; the last seq looked at, or None if the client stopped reading."""
        # Events from live_from on reached this connection live already: replay only what came before.
        before, limit = self.live_from, FIRST_PAGE_EVENTS
        while True:
            page = await database_sync_to_async(replay, thread_sensitive=False, executor=_replay_threads)(
                self.viewer(),
                after,
                epoch=epoch,
                before=before,
                limit=limit,
                max_bytes=settings.PUOMEMO_WS_REPLAY_PAGE_BYTES,
                encoding=self.encoding,
            )
            for frame in page.frames:
                if not await self.outbox.put_paced(frame):
                    return None  # it is being dropped
            after = page.last_seq
            self.replayed_upto = max(self.replayed_upto, after)
            if page.finished:
                return after
            # Grow pages of small events; a page cut short by its bytes read rows it did not use.
            limit = min(settings.PUOMEMO_WS_REPLAY_PAGE_EVENTS, 2 * page.looked_at)

    def _emit(self, message_type: str, data: dict[str, Any]) -> None:
        self.outbox.put(encode(message_type, data, encoding=self.encoding))
