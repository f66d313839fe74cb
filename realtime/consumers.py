"""The /ws consumer: translates frames to actions and events to frames, and enforces the connection's limits."""

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts.access import reauthenticate
from accounts.principal import InvalidToken, Principal, principal_from_token, principal_of_session
from memories.selectors import memory_audience
from memories.visibility import seen_as
from realtime import frames, metrics
from realtime.custom import CUSTOM, InvalidCustomEvent, check_publish
from realtime.events import (
    CHANNELS,
    MEMORIES,
    EventFrames,
    actor_data,
    apublish,
    apublish_presence,
    change_audience,
)
from realtime.fanout import hub
from realtime.limits import SlidingWindow, Throttle, connection_registry
from realtime.log import resync_reason
from realtime.outbox import Outbox
from realtime.replay import replay
from realtime.tickets import principal_from_ticket

logger = logging.getLogger(__name__)

# Close codes (docs/protocol.md, "Close codes").
AUTH_FAILED = 4001
RATE_LIMITED = 4002
INVALID_FORMAT = 4003
IDLE_TIMEOUT = 4008
TOO_MANY_CONNECTIONS = 4029
MESSAGE_TOO_BIG = 1009
SERVER_SHUTTING_DOWN = 1001
SLOW_CONSUMER = 1013
SERVER_ERROR = 1011


# A resume's first page: small, since its events' sizes are not known yet (later pages adapt).
FIRST_PAGE_EVENTS = 8


class MemoryConsumer(AsyncWebsocketConsumer):
    # Events reach consumers through the process's fan-out hub rather than a
    # channel per consumer, so no channel layer here: that also spares each
    # event the thread hop Channels makes before every layer-dispatched handler.
    channel_layer_alias = "__fanout_hub__"

    principal: Principal | None = None
    joined = False  # counted in the registry: disconnect() must undo what connect() set up
    announced = False  # others were told it joined
    held: list | None = None  # live events that arrive during a resume
    resuming: asyncio.Task | None = None  # the resume streaming the log, beside the frames the client sends
    replayed_upto = 0  # a resume sent the events up to this seq; the feed may not have reached it yet
    live_from: int | None = None  # the first logged event offered live: a later resume replays up to it
    live_upto = 0  # the last logged event offered live
    outbox: Outbox | None = None
    close_code: int | None = None
    encoding = frames.JSON  # the subprotocol the client chose: its frames and ours in JSON or MessagePack

    @property
    def user_id(self) -> int:
        return self.principal.user_id

    @property
    def tenant_id(self) -> int:
        return self.principal.tenant_id

    async def connect(self) -> None:
        # Accept first: daphne turns a close before accept into HTTP 403, and the client would never see 4001.
        subprotocol = next((p for p in self.scope.get("subprotocols", []) if p in frames.SUBPROTOCOLS), None)
        self.encoding = frames.SUBPROTOCOLS.get(subprotocol, frames.JSON)
        await self.accept(subprotocol)
        self.outbox = Outbox(self.scope, self._send_frame, lambda: self._close_soon(SLOW_CONSUMER))
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            if "ticket" in query:  # browsers: a single-use ticket keeps long-lived tokens out of URLs
                self.principal = await database_sync_to_async(principal_from_ticket)(query["ticket"][0])
            elif "token" in query:
                self.principal = await database_sync_to_async(principal_from_token)(query["token"][0])
            else:  # the web UI: its session cookie, loaded only for a same-origin page (realtime/routing.py)
                self.principal = await database_sync_to_async(principal_of_session)(self.scope.get("session"))
        except InvalidToken:
            await self.close(AUTH_FAILED)
            return
        self.connection_id = str(uuid.uuid4())
        if await connection_registry().acquire(
            self.connection_id, self.user_id, self.tenant_id, self.principal.user_name
        ):
            self.principal = None
            await self.close(TOO_MANY_CONNECTIONS)
            return
        self.subscriptions: set[str] = set()
        self.rate = SlidingWindow()
        self.invalid = SlidingWindow()
        self.typing = Throttle(settings.PUOMEMO_WS_TYPING_INTERVAL_SECONDS)
        self.published = SlidingWindow()  # custom events, limited per connection
        self.idle_timer = self.expiry_timer = None
        self._touch()
        self._arm_expiry()
        self.joined = True
        metrics.connections.inc()
        await hub().join(self)
        await self._presence("tenant.user_joined")
        self.announced = True

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # daphne cancels an application that does not end soon after its client left:
            # release what the connection holds even then (disconnect() did, if it ran).
            await self._release()

    async def disconnect(self, code: int) -> None:
        metrics.closes.labels(code=str(self.close_code or code)).inc()
        await self._release()

    async def _release(self) -> None:
        """Give back everything the connection holds: its count, feed, gauge, timers and tasks (once)."""
        if not self.joined:
            return
        self.joined = False
        metrics.connections.dec()
        self.outbox.close()
        if self.resuming is not None:
            self.resuming.cancel()
        self.idle_timer.cancel()
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
        steps = [hub().leave(self), connection_registry().release(self.connection_id, self.user_id, self.tenant_id)]
        if self.announced:
            steps.append(self._presence("tenant.user_left"))
        for step in steps:
            # Each step runs even when one before it failed (Redis down or restarting).
            try:
                await step
            except Exception:
                logger.exception("Cleaning up WebSocket connection %s failed", self.connection_id)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # An exception escaping a handler would end the application without
        # disconnect(): its count, feed membership and gauge would leak. Close
        # with 1011 instead, and daphne's disconnect message cleans up.
        try:
            await super().dispatch(message)
        except StopConsumer:
            raise
        except Exception:
            logger.exception("WebSocket handler for %s failed", message.get("type"))
            if message.get("type") == "websocket.disconnect":
                raise StopConsumer from None
            await self.close(SERVER_ERROR)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        if self.close_code is None:
            self.close_code = code
            await super().close(code, reason)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.joined or self.close_code:
            return
        metrics.messages_received.inc()
        self._touch()
        size = len(bytes_data) if bytes_data is not None else len(text_data.encode())
        if size > settings.PUOMEMO_WS_MAX_MESSAGE_BYTES:
            await self.close(MESSAGE_TOO_BIG)
            return
        limit = settings.PUOMEMO_WS_RATE_LIMIT_PER_MINUTE
        sent = self.rate.hit()
        if sent > 2 * limit:
            await self.close(RATE_LIMITED)
            return
        if sent > limit:
            retry = round(self.rate.retry_after(), 1)
            self.emit("error", {"message": f"Rate limit exceeded; retry after {retry} s", "retry_after": retry})
            return
        try:
            message_type, data = frames.decode(bytes_data if bytes_data is not None else text_data, self.encoding)
            await self.handle(message_type, data)
        except frames.InvalidFrame as error:
            if self.invalid.hit() >= settings.PUOMEMO_WS_INVALID_LIMIT_PER_MINUTE:
                await self.close(INVALID_FORMAT)
            else:
                self.emit("error", {"message": str(error)})

    async def handle(self, message_type: str, data: Any) -> None:
        """Answer one client message."""
        handler = {
            "ping": self.on_ping,
            "subscribe": self.on_subscribe,
            "unsubscribe": self.on_unsubscribe,
            "resume": self.on_resume,
            "auth": self.on_auth,
            "presence": self.on_presence,
            "typing": self.on_typing,
            "publish": self.on_publish,
        }.get(message_type)
        if handler is None:
            self.emit("error", {"message": f"Unknown message type: {message_type[:100]}"})
        else:
            await handler(data if isinstance(data, dict) else {})

    async def on_ping(self, data: dict) -> None:
        self.emit("pong", {"timestamp": frames.now_iso()})

    async def on_subscribe(self, data: dict) -> None:
        if self._channels(data, "subscribe") is not None:
            self.subscriptions.update(data["channels"])
            self.emit("subscribed", {"channels": sorted(self.subscriptions)})
            if "last_seq" in data:
                await self.resume(data["last_seq"])

    async def on_unsubscribe(self, data: dict) -> None:
        if self._channels(data, "unsubscribe") is not None:
            self.subscriptions.difference_update(data["channels"])
            self.emit("unsubscribed", {"channels": sorted(self.subscriptions)})

    async def on_resume(self, data: dict) -> None:
        await self.resume(data.get("last_seq"))

    async def on_auth(self, data: dict) -> None:
        token = data.get("token")
        if not isinstance(token, str):
            raise frames.InvalidFrame("Invalid message format: auth needs data.token, a string")
        try:
            self.principal = await database_sync_to_async(reauthenticate)(self.principal, token)
        except InvalidToken:
            await self.close(AUTH_FAILED)
            return
        self._arm_expiry()
        expires_at = self.principal.expires_at
        self.emit("authenticated", {"expires_at": frames.iso(expires_at) if expires_at else None})

    async def on_presence(self, data: dict) -> None:
        self.emit("presence", {"users": await connection_registry().presence(self.tenant_id)})

    async def on_typing(self, data: dict) -> None:
        memory_id = data.get("memory_id")
        if not isinstance(memory_id, str):
            raise frames.InvalidFrame("Invalid message format: typing needs data.memory_id, a string")
        try:
            memory_id = str(uuid.UUID(memory_id))  # one spelling, for the throttle and for the receivers
        except ValueError:
            audience = None
        else:
            audience = await database_sync_to_async(memory_audience)(viewer=self.principal, memory_id=memory_id)
        if audience is None:
            self.emit("error", {"message": f"Unknown memory: {memory_id[:100]}"})
        elif self.typing.allow(memory_id):  # keystrokes come fast; relay one a memory per interval
            await apublish(
                tenant_id=self.tenant_id,
                event_type="memory.typing",
                channel=MEMORIES,
                data={"memory_id": memory_id, **actor_data(self.principal.actor)},
                audience=change_audience(audience, audience),
                origin=self.connection_id,
            )

    async def on_publish(self, data: dict) -> None:
        if "event" not in data:
            raise frames.InvalidFrame("Invalid message format: publish needs data.event and data.payload")
        try:
            event = check_publish(self.principal, data, self.published)
        except InvalidCustomEvent as error:
            self.emit("error", error.error_data())
            return
        memory_id, audience = event["memory_id"], None
        if memory_id is not None:
            audience = await database_sync_to_async(memory_audience)(viewer=self.principal, memory_id=memory_id)
            if audience is None:
                self.emit("error", {"message": f"Unknown memory: {memory_id}"})
                return
        await apublish(
            tenant_id=self.tenant_id,
            event_type=event["event"],
            channel=CUSTOM,
            data=event,
            audience=change_audience(audience, audience) if audience is not None else None,
            origin=self.connection_id,  # never echoed to the connection that published it
        )

    def _channels(self, data: dict, message_type: str) -> list[str] | None:
        """The known channels a (un)subscribe names; raises InvalidFrame, or answers an error and returns None."""
        channels = data.get("channels")
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise frames.InvalidFrame(f"Invalid message format: {message_type} needs data.channels, a list")
        unknown = sorted(set(channels) - set(CHANNELS))
        if unknown:
            known = ", ".join(CHANNELS)
            self.emit("error", {"message": f"Unknown channel(s): {', '.join(unknown)}. Known: {known}"})
            return None
        return channels

    def revise(self, principal: Principal | None) -> None:
        """Follow an access change: the new role from the next event on, or 4001 when access is gone."""
        if principal is None:
            self._close_soon(AUTH_FAILED)
        else:
            self.principal = principal

    async def resume(self, last_seq: Any) -> None:
        """Start sending the logged events after last_seq that the connection may see now, then `resumed`, then
        the live ones; the client's other frames are answered meanwhile."""
        if isinstance(last_seq, bool) or not isinstance(last_seq, int) or last_seq < 0:
            raise frames.InvalidFrame("Invalid message format: last_seq must be a whole number")
        if self.held is not None:
            self.emit("error", {"message": "A resume is already running"})
            return
        self.held = []  # live events wait here until the replay is out
        self.resuming = asyncio.get_running_loop().create_task(self._resume(last_seq))

    async def _resume(self, last_seq: int) -> None:
        try:
            reason, current = await database_sync_to_async(resync_reason)(self.tenant_id, last_seq)
            if reason is not None:
                self.emit("resync_required", {"reason": reason, "current_seq": current})
                return
            # Events from live_from on reached this connection live already: replay only what came before.
            before, after, limit = self.live_from, last_seq, FIRST_PAGE_EVENTS
            while True:  # a page at a time, read and rendered on a thread of its own, not the one all share
                page = await database_sync_to_async(replay, thread_sensitive=False)(
                    self.principal,
                    after,
                    before=before,
                    limit=limit,
                    max_bytes=settings.PUOMEMO_WS_REPLAY_PAGE_BYTES,
                    encoding=self.encoding,
                )
                for text in page.frames:
                    if not await self.outbox.put_paced(text):
                        return  # the client stopped reading and is being dropped
                if not page.looked_at:
                    break
                after = page.last_seq
                self.replayed_upto = max(self.replayed_upto, after)
                # Grow pages of small events; a page cut short by its bytes read rows it did not use.
                limit = min(settings.PUOMEMO_WS_REPLAY_PAGE_EVENTS, 2 * page.looked_at)
            self.emit("resumed", {"last_seq": max(after, self.live_upto)})
        except Exception:
            logger.exception("Resuming WebSocket connection %s failed", self.connection_id)
            self._close_soon(SERVER_ERROR)
        finally:
            # Live events that came meanwhile, after the replay and without what it sent.
            held, self.held = self.held, None
            for event, rendered in held:
                if event["seq"] is None or event["seq"] > self.replayed_upto:
                    text = self._frame_for(event, rendered)
                    if text is not None:
                        self.outbox.put(text)

    def deliver(self, event: dict[str, Any], frames: EventFrames) -> bool:
        """Send or queue an event's frame if this connection subscribed to its channel and may see it, as it sees it.

        Returns whether a frame was sent now (the caller counts them, once per event).
        """
        if event["channel"] not in self.subscriptions or not self.joined or event["origin"] == self.connection_id:
            return False
        if event["seq"] is not None:
            if event["seq"] <= self.replayed_upto:
                return False  # sent by the replay already
            self.live_from = self.live_from or event["seq"]
            self.live_upto = event["seq"]
        if self.held is not None:
            if len(self.held) >= settings.PUOMEMO_WS_OUTBOUND_QUEUE:
                self._close_soon(SLOW_CONSUMER)
            self.held.append((event, frames))
            return False
        text = self._frame_for(event, frames)
        return text is not None and self.outbox.put(text)

    def _frame_for(self, event: dict[str, Any], frames: EventFrames) -> str | bytes | None:
        if event["audience"] is None:  # everyone in the tenant
            return frames.text(None, self.encoding)
        seen = seen_as(self.principal, before=frames.before, after=frames.after)
        return frames.text(seen, self.encoding) if seen is not None else None

    def emit(self, message_type: str, data: Any) -> None:
        """Send a reply frame, behind the events already queued."""
        if self.outbox.put(frames.encode(message_type, data, encoding=self.encoding)):
            metrics.messages_sent.inc()

    async def _send_frame(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.send(bytes_data=frame)
        else:
            await self.send(text_data=frame)

    def _touch(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_later(settings.PUOMEMO_WS_IDLE_TIMEOUT_SECONDS, self._close_soon, IDLE_TIMEOUT)

    def _arm_expiry(self) -> None:
        # A JWT's socket closes with 4001 when the token expires, unless an `auth` frame renewed it.
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
        expires_at = self.principal.expires_at
        if expires_at is not None:
            delay = max(0.0, (expires_at - datetime.now(UTC)).total_seconds())
            self.expiry_timer = asyncio.get_running_loop().call_later(delay, self._close_soon, AUTH_FAILED)

    def _close_soon(self, code: int) -> None:
        if self.close_code is None:
            self._closing = asyncio.get_running_loop().create_task(self.close(code))

    async def _presence(self, event_type: str) -> None:
        await apublish_presence(
            event_type,
            tenant_id=self.tenant_id,
            user_id=self.user_id,
            user_name=self.principal.user_name,
            connection_id=self.connection_id,
            origin=self.connection_id,  # not news to the connection itself
        )
