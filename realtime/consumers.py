"""The /ws consumer: translates client frames to calls and events to frames, and closes with the protocol's codes."""

import asyncio
import contextvars
import itertools
import logging
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from redis.exceptions import RedisError

from accounts.access import reauthenticate
from accounts.principal import InvalidToken, Principal
from realtime import frames, metrics
from realtime.authentication import principal_of_scope
from realtime.daphne import CONNECTION
from realtime.delivery import Delivery, ResumeRunning
from realtime.limits import SlidingWindow, Throttle
from realtime.log import Position
from realtime.node import node
from realtime.outbox import Outbox
from realtime.protocol import CHANNELS, MAX_EPOCH_LENGTH, MEMORIES, CloseCode
from realtime.relay import Refused, channels_named, relay_custom, relay_typing
from realtime.rendering import EventFrames

logger = logging.getLogger(__name__)

# Each set of channels a connection can subscribe to, as one tuple shared by every connection (sorted, as the
# `subscribed` reply lists them): a set per connection would weigh 216 bytes.
SUBSCRIPTIONS = {
    frozenset(chosen): tuple(sorted(chosen))
    for size in range(len(CHANNELS) + 1)
    for chosen in itertools.combinations(CHANNELS, size)
}


class MemoryConsumer(AsyncWebsocketConsumer):
    # Events reach consumers through the process's fan-out hub rather than a channel per
    # consumer: an alias no layer is configured under gives no channel layer (and spares
    # each event the thread hop Channels makes before every layer-dispatched handler).
    channel_layer_alias = "no channel layer"
    channel_layer = None
    groups = ()  # none; Channels would give each connection an empty list of its own

    def __init__(self) -> None:
        super().__init__()
        # Every attribute of a connection, set here and always in this order. CPython shares one table of
        # attribute names among a class's instances, but takes new names into it only while few instances
        # exist; connections come in bursts, made before they set up, and one that then set a name the table
        # lacked got a dict of its own (~0.5 KiB each, measured).
        self.scope: dict | None = None  # the handshake's, until the connection is set up
        self.base_send: Callable | None = None
        self.encoding = frames.JSON  # the subprotocol the client chose: its frames and ours in JSON or MessagePack
        self.outbox: Outbox | None = None
        self.delivery: Delivery | None = None
        self.principal: Principal | None = None
        self.connection_id = ""
        self.joined = False  # counted in the registry: _release() must undo what connect() set up
        self.announced = False  # others were told it joined
        self.close_code: int | None = None
        self._closing: asyncio.Task | None = None
        self.subscriptions: tuple[str, ...] = ()  # one of SUBSCRIPTIONS' tuples
        self.rate: SlidingWindow | None = None
        # Made on first use: most connections never send an invalid frame, a custom event or a typing indicator.
        self._invalid: SlidingWindow | None = None
        self._published: SlidingWindow | None = None
        self._typing: Throttle | None = None
        self.active_at = 0.0  # the event loop's time of the client's last message
        self.idle_timer: asyncio.TimerHandle | None = None
        self.expiry_timer: asyncio.TimerHandle | None = None

    @classmethod
    def as_asgi(cls) -> Callable:
        """The ASGI app: each connection runs its consumer's coroutine alone (Channels' app awaits it in another)."""

        def app(scope, receive, send):
            return cls()(scope, receive, send)

        app._asgi_single_callable = True  # for asgiref: called once with (scope, receive, send)
        return app

    def __call__(self, scope, receive, send) -> Coroutine:
        """Run the connection: Channels' AsyncConsumer.__call__, without a channel layer, in one coroutine."""
        # Channels reads the client's messages through await_many_dispatch: for each connection a second task,
        # asyncio.wait() and their futures (~2 KiB), to read one queue. The scope goes once the connection is set up.
        self.scope, self.base_send = scope, send
        return self._run(receive)

    async def _run(self, receive: Callable[[], Coroutine]) -> None:
        try:
            while True:
                # Each message is handled in a task of its own, on a copy of the connection's context: after each
                # database_sync_to_async, asgiref copies into the caller's context what Django set in context
                # variables on the thread (asgiref Locals of the caches, task backends and translation, a decimal
                # context): ~1 KiB that would otherwise stay in the connection's context for its life. (No local
                # variable either: it would keep the last message while the connection waits for the next.)
                await asyncio.ensure_future(self.dispatch(await receive()))
        except StopConsumer:
            pass
        finally:
            # daphne cancels an application that does not end soon after its client left:
            # release what the connection holds even then (disconnect() did, if it ran).
            await self._release()

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
        overflow = self._overflow
        self.outbox = Outbox(self.scope.get(CONNECTION), self._send_frame, overflow)
        self.delivery = Delivery(self.outbox, self._viewer, self.encoding, overflow)
        # A storm (every client of a dead instance at once) waits its turn, or is told to come back later:
        # it must not take the database, Redis or this process down, nor fail with 1011.
        admission = node().admission()
        if not await admission.enter():
            await self.close(CloseCode.TRY_AGAIN_LATER, "Try again later: too many connections are being set up")
            return
        try:
            await self._join()
        finally:
            admission.leave()
            self.scope = None  # nothing reads the handshake's headers and query string from here on

    async def _join(self) -> None:
        """Authenticate, count and feed the new connection, or close it with the code that says why not."""
        try:
            self.principal = await database_sync_to_async(principal_of_scope)(self.scope)
        except InvalidToken:
            await self.close(CloseCode.AUTH_FAILED)
            return
        self.connection_id = str(uuid.uuid4())
        self.rate = SlidingWindow()
        # Counted from here on: a failure while joining still releases (dispatch closes 1011).
        self.joined = True
        metrics.connections.inc()
        if await node().admit(self):
            self.joined = False
            metrics.connections.dec()
            self.principal = None
            await self.close(CloseCode.TOO_MANY_CONNECTIONS)
            return
        self.announced = True
        self._touch()
        self._arm_expiry()

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
        self.delivery.stop()
        for timer in (self.idle_timer, self.expiry_timer):
            if timer is not None:
                timer.cancel()
        # Shielded: daphne cancels a connection's task that outlives its client; the count must go back all the same.
        await asyncio.shield(node().release(self, announced=self.announced))

    async def dispatch(self, message: dict[str, Any]) -> None:
        # An exception escaping a handler would end the application without
        # disconnect(): its count, feed membership and gauge would leak. Close
        # with 1011 (1013 when Redis failed) instead, and daphne's disconnect message cleans up.
        try:
            await super().dispatch(message)
        except StopConsumer:
            raise
        except Exception as error:
            if message.get("type") == "websocket.disconnect":
                logger.exception("WebSocket handler for %s failed", message.get("type"))
                raise StopConsumer from None
            if isinstance(error, RedisError):
                # Redis down or failing over, or the process's Redis connections busy past the pool's timeout:
                # not this connection's fault, and the client comes back (docs/protocol.md, "Close codes").
                logger.warning("WebSocket handler for %s could not reach Redis: %r", message.get("type"), error)
                await self.close(CloseCode.TRY_AGAIN_LATER)
            else:
                logger.exception("WebSocket handler for %s failed", message.get("type"))
                await self.close(CloseCode.SERVER_ERROR)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        if self.close_code is None:
            self.close_code = int(code) if code is not None else code
            await super().close(self.close_code, reason)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.joined or self.close_code:
            return
        metrics.messages_received.inc()
        self._touch()
        size = len(bytes_data) if bytes_data is not None else len(text_data.encode())
        if size > settings.PUOMEMO_WS_MAX_MESSAGE_BYTES:
            await self.close(CloseCode.MESSAGE_TOO_BIG)
            return
        limit = settings.PUOMEMO_WS_RATE_LIMIT_PER_MINUTE
        sent = self.rate.hit()
        if sent > 2 * limit:
            await self.close(CloseCode.RATE_LIMITED)
            return
        if sent > limit:
            retry = round(self.rate.retry_after(), 1)
            self.emit("error", {"message": f"Rate limit exceeded; retry after {retry} s", "retry_after": retry})
            return
        try:
            message_type, data = frames.decode(bytes_data if bytes_data is not None else text_data, self.encoding)
            await self.handle(message_type, data if isinstance(data, dict) else {})
        except frames.InvalidFrame as error:
            if self._invalid is None:
                self._invalid = SlidingWindow()
            if self._invalid.hit() >= settings.PUOMEMO_WS_INVALID_LIMIT_PER_MINUTE:
                await self.close(CloseCode.INVALID_FORMAT)
            else:
                self.emit("error", {"message": str(error)})
        except Refused as refused:
            self.emit("error", refused.data)

    async def handle(self, message_type: str, data: dict) -> None:
        """Answer one client message."""
        if message_type == "ping":
            self.emit("pong", {"timestamp": frames.now_iso()})
        elif message_type in ("subscribe", "unsubscribe"):
            channels = channels_named(data, message_type)
            # Checked before anything changes: a frame refused is a frame not applied, not half of one.
            position = stream_position(data) if message_type == "subscribe" and "last_seq" in data else None
            if message_type == "subscribe":
                self.subscriptions = SUBSCRIPTIONS[frozenset(self.subscriptions).union(channels)]
            else:
                self.subscriptions = SUBSCRIPTIONS[frozenset(self.subscriptions).difference(channels)]
            self.emit(f"{message_type}d", {"channels": list(self.subscriptions)})
            if position is not None:
                self.resume(*position)
        elif message_type == "resume":
            self.resume(*stream_position(data))
        elif message_type == "auth":
            await self.authenticate(data.get("token"))
        elif message_type == "presence":
            try:
                users = await node().registry.presence(self.tenant_id)
            except RedisError:
                # Only this answer is missing (Redis down or failing over): the connection and its events go on.
                raise Refused(
                    {"message": "Presence is unavailable for a moment; ask again", "retry_after": 1.0}
                ) from None
            self.emit("presence", {"users": users})
        elif message_type == "typing":
            if self._typing is None:
                self._typing = Throttle(settings.PUOMEMO_WS_TYPING_INTERVAL_SECONDS)
            await relay_typing(self.principal, self.connection_id, data, self._typing)
        elif message_type == "publish":
            if self._published is None:
                self._published = SlidingWindow()
            await relay_custom(self.principal, self.connection_id, data, self._published)
        else:
            self.emit("error", {"message": f"Unknown message type: {message_type[:100]}"})

    def resume(self, last_seq: int, epoch: str | None) -> None:
        """Replay the events after last_seq, then `resumed`, then live ones; other frames are answered meanwhile."""
        try:
            self.delivery.resume(self.tenant_id, last_seq, epoch)
        except ResumeRunning:
            self.emit("error", {"message": "A resume is already running"})

    async def authenticate(self, token: Any) -> None:
        """Go on with a fresh token of the same user and tenant (`auth`), or close 4001."""
        if not isinstance(token, str):
            raise frames.InvalidFrame("Invalid message format: auth needs data.token, a string")
        try:
            self.principal = await database_sync_to_async(reauthenticate)(self.principal, token)
        except InvalidToken:
            await self.close(CloseCode.AUTH_FAILED)
            return
        self._arm_expiry()
        expires_at = self.principal.expires_at
        self.emit("authenticated", {"expires_at": frames.iso(expires_at) if expires_at else None})

    def revise(self, principal: Principal | None) -> None:
        """Follow an access change: the new role from the next event on, or 4001 when access is gone."""
        if principal is None:
            self._close_soon(CloseCode.AUTH_FAILED)
        else:
            self.principal = principal

    def deliver(self, event: dict[str, Any], frames: EventFrames) -> bool:
        """Offer an event of the tenant; returns whether a frame was sent now (the caller counts them once)."""
        if event["channel"] not in self.subscriptions or not self.joined or event["origin"] == self.connection_id:
            return False
        return self.delivery.offer(event, frames)

    def renumbered(self, current: Position) -> None:
        """The tenant's stream has a new epoch (a restored database): a connection that follows it must reload."""
        if MEMORIES in self.subscriptions and self.joined:
            self.delivery.renumbered(current)

    def emit(self, message_type: str, data: Any) -> None:
        """Send a reply frame, behind the events already queued."""
        if self.outbox.put(frames.encode(message_type, data, encoding=self.encoding)):
            metrics.messages_sent.inc()

    async def _send_frame(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.send(bytes_data=frame)
        else:
            await self.send(text_data=frame)

    def _viewer(self) -> Principal:
        return self.principal  # the principal now: a role change applies from the next event on

    def _overflow(self) -> None:
        self._close_soon(CloseCode.SLOW_CONSUMER)

    def _touch(self) -> None:
        # One timer for the connection, not one per message: when it fires it looks at the last activity.
        # (A cancelled timer stays in the event loop's heap, with what it refers to, until its time comes.)
        # The connection's timers run in an empty context: one keeps a copy of the context it was set in
        # otherwise, here a message's task's with what asgiref copied into it (see _run).
        loop = asyncio.get_running_loop()
        self.active_at = loop.time()
        if self.idle_timer is None:
            due = self.active_at + settings.PUOMEMO_WS_IDLE_TIMEOUT_SECONDS
            self.idle_timer = loop.call_at(due, self._idle, context=contextvars.Context())

    def _idle(self) -> None:
        loop = asyncio.get_running_loop()
        due = self.active_at + settings.PUOMEMO_WS_IDLE_TIMEOUT_SECONDS
        if loop.time() < due:
            self.idle_timer = loop.call_at(due, self._idle, context=contextvars.Context())
        else:
            self._close_soon(CloseCode.IDLE_TIMEOUT)

    def _arm_expiry(self) -> None:
        # A JWT's socket closes with 4001 when the token expires, unless an `auth` frame renewed it.
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
        expires_at = self.principal.expires_at
        if expires_at is not None:
            delay = max(0.0, (expires_at - datetime.now(UTC)).total_seconds())
            self.expiry_timer = asyncio.get_running_loop().call_later(
                delay, self._close_soon, CloseCode.AUTH_FAILED, context=contextvars.Context()
            )

    def _close_soon(self, code: int) -> None:
        if self.close_code is None:
            self._closing = asyncio.get_running_loop().create_task(self.close(code))


def stream_position(data: dict) -> tuple[int, str | None]:
    """A `resume`'s (or a `subscribe`'s) last_seq and epoch, or InvalidFrame saying what is wrong with them."""
    last_seq, epoch = data.get("last_seq"), data.get("epoch")
    if isinstance(last_seq, bool) or not isinstance(last_seq, int) or last_seq < 0:
        raise frames.InvalidFrame("Invalid message format: last_seq must be a whole number")
    if epoch is not None and not (isinstance(epoch, str) and 0 < len(epoch) <= MAX_EPOCH_LENGTH):
        raise frames.InvalidFrame(
            f"Invalid message format: epoch must be a string of 1 to {MAX_EPOCH_LENGTH} characters"
        )
    return last_seq, epoch
