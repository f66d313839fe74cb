"""A resilient client for PUO Memo's /ws: the spec's API plus reconnects that resume from the last seq seen,
token refresh, presence, typing, custom events, MessagePack frames and connection states.

Usage: see clients/python/README.md.
"""

import asyncio
import base64
import binascii
import inspect
import json
import logging
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, Literal
from urllib.parse import quote

import websockets
from websockets.asyncio.client import ClientConnection

logger = logging.getLogger(__name__)

Handler = Callable[[Any], Any]
TokenProvider = Callable[[], str | Awaitable[str]]
Sleep = Callable[[float], Awaitable[Any]]
State = Literal["connecting", "open", "reconnecting", "closed"]
Encoding = Literal["json", "msgpack"]

STATES: tuple[State, ...] = ("connecting", "open", "reconnecting", "closed")
DEFAULT_CHANNELS = ("memories", "tenant.updates")
CHANNELS = (*DEFAULT_CHANNELS, "custom")  # `custom` carries the custom.* events applications publish
ENCODINGS: tuple[Encoding, ...] = ("json", "msgpack")
MSGPACK_SUBPROTOCOL = "puomemo.msgpack"
CUSTOM_EVENT = re.compile(r"custom\.[a-z0-9][a-z0-9_.-]{0,63}")  # the whole name; `$` would let "\n" through
# 4001 (auth failed, expired, revoked), 4003 (invalid format) and 1009 (frame too large): the same connection
# would fail again.
STOP_CODES = frozenset({4001, 4003, 1009})
# The server asked the client to slow down (4002 rate limit, 4029 too many connections): the delay keeps growing
# even after a connection that got subscribed. Every other code (1001, 1006, 1011, 1013, 4008, ...) reconnects.
BACKOFF_CODES = frozenset({4002, 4029})
# The server restarts (1012): reconnect at once, after a random wait of up to `restart_jitter` seconds.
RESTART_CODES = frozenset({1012})
TYPING_INTERVAL = 2.0  # the server relays one `typing` a memory per 2 s per connection
MAX_FRAME_BYTES = 16 * 1_048_576  # server frames carry whole memories
MAX_TRACKED_VERSIONS = 10_000  # memories whose last version seen is kept, to drop stale events


class PuoMemoClosedError(Exception):
    """The server closed with a code that reconnecting cannot fix (4001, 4003 or 1009): the client stopped."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed with {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason


def jwt_expiry(token: str) -> float | None:
    """A JWT's `exp` as Unix time, read without verifying; None for API keys and anything unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def backoff_delay(
    attempt: int, *, base: float = 1.0, cap: float = 60.0, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before reconnect `attempt` (0, 1, …): 1, 2, 4 … capped at 60, less up to half of it (jitter)."""
    step = min(cap, base * 2 ** min(attempt, 32))
    return step / 2 + rand() * step / 2  # equal jitter: clients cut off together do not return together


def refresh_delay(remaining: float, *, lead: float = 60.0) -> float:
    """Seconds until a token with `remaining` seconds left should be renewed: 60 s before, or at 80% if short."""
    return max(0.0, remaining - min(lead, remaining * 0.2))


def load_msgpack() -> ModuleType:
    """The `msgpack` module, imported on first use: an optional extra of this package."""
    try:
        import msgpack
    except ImportError as missing:
        raise ImportError(
            "encoding='msgpack' needs the msgpack package: pip install 'puomemo-client[msgpack]'"
        ) from missing
    return msgpack


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


async def _call(provider: TokenProvider) -> str:
    result = provider()
    return await result if inspect.isawaitable(result) else result


class PuoMemoClient:
    """WebSocket client for PUO Memo real-time updates that reconnects, resubscribes and refreshes its token."""

    def __init__(
        self,
        token: str | None = None,
        url: str = "wss://api.puomemo.com/ws",
        *,
        token_provider: TokenProvider | None = None,
        channels: Iterable[str] = DEFAULT_CHANNELS,
        keepalive: float | None = 30.0,
        reply_timeout: float = 10.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        stable_after: float = 5.0,
        restart_jitter: float = 1.0,
        last_seq: int | None = None,
        epoch: str | None = None,
        encoding: Encoding = "json",
        compression: str | None = "deflate",
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if token is None and token_provider is None:
            raise ValueError("PuoMemoClient needs a token or a token_provider")
        if last_seq is not None and (isinstance(last_seq, bool) or not isinstance(last_seq, int) or last_seq < 0):
            raise ValueError("last_seq must be a whole number or None")
        if epoch is not None and not isinstance(epoch, str):
            raise ValueError("epoch must be a string or None")
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r}")
        if compression not in ("deflate", None):
            raise ValueError(f"compression must be 'deflate' or None, not {compression!r}")
        # Imported now, so a missing extra fails here and not on every reconnect.
        self._msgpack = load_msgpack() if encoding == "msgpack" else None
        self.encoding = encoding  # asked for; the server may answer in JSON (see connection_encoding)
        self.compression = compression  # permessage-deflate, offered to the server, which may decline
        self.token = token
        self.url = url
        self.token_provider = token_provider
        self.channels = list(channels)  # kept as the server last confirmed them, and resubscribed after reconnects
        self.keepalive = keepalive  # seconds with nothing sent or received before a heartbeat `ping`
        self.reply_timeout = reply_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stable_after = stable_after  # seconds a subscribed connection must last to reset the backoff
        self.restart_jitter = restart_jitter
        self.state: State = "closed"
        self.attempt = 0  # reconnects since the last good connection: the next backoff step
        # The client's time, injectable for tests: backoff waits, `stable_after`, the heartbeat's interval.
        # Reply timeouts (presence, refresh, `subscribed`, `pong`) run on asyncio's own clock.
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self.ws: ClientConnection | None = None
        self.connection_encoding: Encoding | None = None  # what the open connection speaks, None when closed
        self.handlers: dict[str, list[Handler]] = {}
        self.close_code: int | None = None  # the code that stopped the client, if one did
        self._running = False
        self._connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._waiters: dict[str, deque[asyncio.Future]] = {}
        self._typing_sent: dict[str, float] = {}
        self._last_sent = 0.0
        self._last_received = 0.0
        self._tasks: list[asyncio.Task] = []
        self._last_seq = last_seq
        self._epoch = epoch
        self._versions: dict[str, int] = {}  # memory id -> the newest `version` seen, at most MAX_TRACKED_VERSIONS

    @property
    def connected(self) -> bool:
        """Whether a connection is open and subscribed."""
        return self._connected.is_set()

    @property
    def last_seq(self) -> int | None:
        """The tenant's event position the client has reached: sent as `last_seq` on every (re)subscribe.

        The highest `seq` of the memory events received and of `resumed`; after `resync_required`, its
        `current_seq`. None until the first of these (unless given to the constructor).
        """
        return self._last_seq

    @property
    def epoch(self) -> str | None:
        """The epoch `last_seq` belongs to, sent with it: a server whose stream was numbered anew (a restored
        database) answers `resync_required` with reason "epoch" instead of replaying the wrong events."""
        return self._epoch

    def on(self, event: str, handler: Handler) -> None:
        """Register a handler (sync or async) called with each `event`'s data, or a client event.

        Client events: `closed` ({code, reason, reconnect}); `state` ({state, previous, code, reason, delay,
        attempt}) with state "connecting" (each attempt), "open" (subscribed), "reconnecting" (waiting `delay`
        seconds after a close with `code`) or "closed" (stopped); and `*` (every frame received, whole:
        {id, type, timestamp, data[, seq]}).

        Custom events (channel `custom`) arrive by their full name, e.g. `custom.cursor` ({event, payload,
        memory_id, user_id, user_name}); there are no patterns other than `*`.

        `resync_required` ({reason, current_seq, epoch}) means the client cannot catch up from the event log:
        reason "expired" (the log no longer has the events), "ahead" (the position is ahead of the server),
        "too_many" (more than the server replays in one resume) or "epoch" (the stream was numbered anew, e.g.
        a restored database). Reload the state over REST; the client continues from `current_seq` and `epoch`.
        """
        self.handlers.setdefault(event, []).append(handler)

    def off(self, event: str, handler: Handler | None = None) -> None:
        """Remove one handler of `event`, or all of them."""
        if handler is None:
            self.handlers.pop(event, None)
        elif handler in self.handlers.get(event, []):
            self.handlers[event].remove(handler)

    async def connect(self) -> None:
        """Connect and reconnect with backoff until disconnect(); raise PuoMemoClosedError on 4001, 4003, 1009."""
        self._running = True
        self.close_code = None
        self._wake.clear()
        dispatcher = asyncio.create_task(self._dispatch())
        self.attempt = 0
        try:
            fresh = False  # the first connection uses the token given, if any
            while self._running:
                self._set_state("connecting")
                good, code, reason = await self._connect_once(fresh_token=fresh)
                fresh = True
                stop = code in STOP_CODES
                self._emit("closed", {"code": code, "reason": reason, "reconnect": self._running and not stop})
                if stop:
                    self._running = False
                    self.close_code = code
                    self._set_state("closed", code=code, reason=reason)
                    await self._events.join()
                    raise PuoMemoClosedError(code, reason)
                if not self._running:
                    break
                if good and code not in BACKOFF_CODES:
                    self.attempt = 0  # a good connection: start again from the first step
                if code in RESTART_CODES:  # another instance (or this one, back) takes it: no backoff
                    delay = self._rand() * self.restart_jitter
                else:
                    delay = backoff_delay(self.attempt, base=self.backoff_base, cap=self.backoff_cap, rand=self._rand)
                self.attempt += 1
                self._set_state("reconnecting", code=code, reason=reason, delay=delay)
                logger.info("WebSocket closed with %s; reconnecting in %.1f s", code, delay)
                await self._pause(delay)
            self._set_state("closed")
            await self._events.join()
        finally:
            self._running = False
            self.state = "closed"
            dispatcher.cancel()

    async def disconnect(self) -> None:
        """Close the connection and stop reconnecting."""
        self._running = False
        self._wake.set()
        if self.ws is not None:
            await self.ws.close()

    async def _pause(self, delay: float) -> None:
        """Sleep `delay` seconds of the client's time; disconnect() cuts it short."""
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _set_state(
        self, state: State, *, code: int | None = None, reason: str = "", delay: float | None = None
    ) -> None:
        previous, self.state = self.state, state
        details = {"code": code, "reason": reason, "delay": delay, "attempt": self.attempt}
        self._emit("state", {"state": state, "previous": previous, **details})

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a connection is open and subscribed."""
        await asyncio.wait_for(self._connected.wait(), timeout if timeout is not None else self.reply_timeout)

    async def send(self, message_type: str, data: dict[str, Any] | None = None) -> bool:
        """Send a frame; return False (and log) when there is no open connection."""
        if self.ws is None:
            logger.warning("WebSocket not connected")
            return False
        timestamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        frame = {"id": str(uuid.uuid4()), "type": message_type, "timestamp": timestamp, "data": data}
        # A MessagePack connection takes binary frames only (bytes), a JSON one text frames only.
        message = self._msgpack.packb(frame) if self.connection_encoding == "msgpack" else json.dumps(frame)
        try:
            await self.ws.send(message)
        except websockets.ConnectionClosed:
            logger.info("WebSocket closed before %s could be sent", message_type)  # its close code says why
            return False
        self._last_sent = self._clock()
        return True

    async def publish(self, event: str, payload: dict[str, Any], memory_id: str | uuid.UUID | None = None) -> bool:
        """Relay a custom event to the tenant's other connections on `custom`; False when not connected.

        `event` is `custom.<name>` (lowercase letters, digits, `_`, `.`, `-`; at most 64 after `custom.`) and
        `payload` a dict; with `memory_id`, only those who may see that memory get it. The server answers
        refusals (payload too large, too many a minute) with an `error` frame.
        """
        if not isinstance(event, str) or not CUSTOM_EVENT.fullmatch(event):
            raise ValueError(f"event must match custom.<name> ({CUSTOM_EVENT.pattern}), not {event!r}")
        if not isinstance(payload, dict):
            raise ValueError(f"payload must be a dict, not {type(payload).__name__}")
        data: dict[str, Any] = {"event": event, "payload": payload}
        if memory_id is not None:
            try:
                data["memory_id"] = str(uuid.UUID(str(memory_id)))
            except ValueError:
                raise ValueError(f"memory_id must be a memory's UUID, not {memory_id!r}") from None
        return await self.send("publish", data)

    async def subscribe(self, channels: Iterable[str]) -> list[str]:
        """Add channels (kept for every reconnect); return all the channels subscribed."""
        wanted = [channel for channel in channels if channel not in self.channels]
        if not self.connected:
            self.channels += wanted  # subscribed on the next connection
        elif wanted:
            await self._request("subscribe", {"channels": wanted}, "subscribed")
        return self.channels

    async def unsubscribe(self, channels: Iterable[str]) -> list[str]:
        """Drop channels (for every reconnect too); return the channels still subscribed."""
        unwanted = list(channels)
        if not self.connected:
            self.channels = [channel for channel in self.channels if channel not in unwanted]
            return self.channels
        await self._request("unsubscribe", {"channels": unwanted}, "unsubscribed")
        return self.channels

    async def refresh(self, token: str) -> str | None:
        """Renew the connection's credentials in-band (`auth`); return `expires_at`, None for API keys."""
        data = await self._request("auth", {"token": token}, "authenticated")
        self.token = token  # reconnects use it too
        return data.get("expires_at")

    async def presence(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """The tenant's connected users: [{user_id, user_name, connections}]."""
        data = await self._request("presence", None, "presence", timeout)
        return data["users"]

    async def typing(self, memory_id: str) -> bool:
        """Tell teammates this user is typing in a memory; at most one a memory per 2 s (False when throttled)."""
        now = self._clock()
        if now - self._typing_sent.get(memory_id, -TYPING_INTERVAL) < TYPING_INTERVAL:
            return False
        if not await self.send("typing", {"memory_id": memory_id}):
            return False
        self._typing_sent = {m: t for m, t in self._typing_sent.items() if now - t < TYPING_INTERVAL}
        self._typing_sent[memory_id] = now
        return True

    async def _connect_once(self, *, fresh_token: bool) -> tuple[bool, int, str]:
        """One connection from open to close; returns whether it was good, and its close code and reason.

        Good: subscribed, and open for `stable_after` seconds at least (a connection dropped at once is no
        progress, so the backoff keeps growing).
        """
        opened_at: float | None = None
        ws = None
        try:
            url = await self._url(fresh_token)
            connection = websockets.connect(
                url,
                max_size=MAX_FRAME_BYTES,
                open_timeout=self.reply_timeout,
                compression=self.compression,
                subprotocols=[MSGPACK_SUBPROTOCOL] if self.encoding == "msgpack" else None,
            )
            async with connection as ws:
                self.connection_encoding = "msgpack" if ws.subprotocol == MSGPACK_SUBPROTOCOL else "json"
                if self.encoding != self.connection_encoding:
                    logger.info("The server did not select %s: JSON on this connection", MSGPACK_SUBPROTOCOL)
                self.ws = ws
                if not self._running:  # disconnect() came while connecting
                    return False, 1000, ""
                self._last_received = self._clock()
                if self.channels:
                    subscribe: dict[str, Any] = {"channels": self.channels}
                    if self._last_seq is not None:
                        subscribe["last_seq"] = self._last_seq  # the server replays what was missed, then `resumed`
                        if self._epoch is not None:
                            subscribe["epoch"] = self._epoch  # ...if its numbering is still the one it came from
                    await self.send("subscribe", subscribe)
                    self._tasks.append(asyncio.create_task(self._expect_subscribed(ws)))
                else:
                    opened_at = self._open(ws)
                async for raw in ws:
                    self._last_received = self._clock()
                    frame = self._parse(raw)
                    if frame is None:
                        continue
                    message_type, data = frame["type"], frame.get("data")
                    if not self._track(message_type, frame.get("seq"), data, frame.get("epoch")):
                        continue  # an older version of a memory than one already seen
                    if message_type in ("subscribed", "unsubscribed") and isinstance(data, dict):
                        self.channels = list(data.get("channels", self.channels))
                    if message_type == "subscribed" and opened_at is None:
                        opened_at = self._open(ws)  # state "open" before `subscribed`'s own handlers
                    self._emit("*", frame)
                    self._resolve(message_type, data)
                    self._emit(message_type, data)
        except websockets.ConnectionClosed:
            pass
        except Exception as error:  # DNS, refused, handshake, or a token provider that failed: retry with backoff
            logger.warning("WebSocket connection failed: %s", self._redact(str(error) or type(error).__name__))
        finally:
            self.ws = None
            self.connection_encoding = None
            self._connected.clear()
            for task in self._tasks:
                task.cancel()
            self._tasks = []
            for waiters in self._waiters.values():
                for future in waiters:
                    if not future.done():
                        future.set_exception(ConnectionError("WebSocket closed"))
                waiters.clear()
        good = opened_at is not None and self._clock() - opened_at >= self.stable_after
        if ws is None:
            return good, 1006, ""
        return good, ws.close_code or 1006, ws.close_reason or ""

    def _open(self, ws: ClientConnection) -> float:
        """The connection is subscribed: state "open", token renewal and heartbeat; return when it opened."""
        self._connected.set()
        self._set_state("open")
        self._tasks.append(asyncio.create_task(self._refresh_loop()))
        if self.keepalive:
            self._tasks.append(asyncio.create_task(self._keepalive_loop(ws)))
        return self._clock()

    async def _expect_subscribed(self, ws: ClientConnection) -> None:
        """Give up on a connection that does not confirm the subscription within the reply timeout."""
        try:
            await asyncio.wait_for(self._connected.wait(), self.reply_timeout)
        except TimeoutError:
            logger.warning("No `subscribed` reply within %s s: dropping the connection", self.reply_timeout)
            ws.transport.abort()  # counts as 1006: reconnect with backoff

    def _track(self, message_type: str, seq: Any, data: Any, epoch: Any = None) -> bool:
        """Follow the event position; return False for a memory event older than a version already seen."""
        if _whole(seq):
            if isinstance(epoch, str) and epoch != self._epoch:
                self._last_seq, self._epoch = seq, epoch  # numbered anew: the old position means nothing now
            else:
                self._last_seq = seq if self._last_seq is None else max(self._last_seq, seq)
        if not isinstance(data, dict):
            return True
        if message_type == "resumed" and _whole(data.get("last_seq")):
            self._last_seq = max(self._last_seq or 0, data["last_seq"])
            if isinstance(data.get("epoch"), str):
                self._epoch = data["epoch"]
        elif message_type == "resync_required" and _whole(data.get("current_seq")):
            # Handlers reload over REST; the client goes on from the tenant's current position.
            self._last_seq = data["current_seq"]
            self._epoch = data.get("epoch") if isinstance(data.get("epoch"), str) else None
            self._versions.clear()  # an "ahead" server may have been restored from a backup: versions too
            if not self.handlers.get("resync_required"):
                logger.warning("Resync required (%s) and no handler: reload the state over REST", data.get("reason"))
        elif message_type in ("memory.created", "memory.restored", "memory.updated"):
            memory = data.get("memory")
            memory_id = memory.get("id") if isinstance(memory, dict) else None
            version = memory.get("version") if isinstance(memory, dict) else None
            if isinstance(memory_id, str) and _whole(version):
                seen = self._versions.pop(memory_id, None)  # re-inserted last: the oldest entries go first
                if seen is not None and version < seen:
                    self._versions[memory_id] = seen
                    logger.debug("Dropped %s of %s: version %s, %s seen", message_type, memory_id, version, seen)
                    return False
                self._versions[memory_id] = version
                while len(self._versions) > MAX_TRACKED_VERSIONS:
                    del self._versions[next(iter(self._versions))]
        return True

    def _redact(self, text: str) -> str:
        """`text` without the token (an invalid URI's error quotes the URL, which carries it)."""
        if self.token:
            text = text.replace(quote(self.token, safe=""), "***").replace(self.token, "***")
        return text

    async def _url(self, fresh_token: bool) -> str:
        if self.token_provider is not None and (fresh_token or self.token is None):
            self.token = await _call(self.token_provider)
        separator = "&" if "?" in self.url else "?"
        return f"{self.url}{separator}token={quote(self.token, safe='')}"

    async def _request(self, message_type: str, data: Any, reply: str, timeout: float | None = None) -> Any:
        """Send a frame and return the data of the next `reply` frame."""
        future = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(reply, deque())
        waiters.append(future)
        try:
            if not await self.send(message_type, data):
                raise ConnectionError("WebSocket not connected")
            return await asyncio.wait_for(future, timeout if timeout is not None else self.reply_timeout)
        finally:
            if future in waiters:
                waiters.remove(future)

    def _resolve(self, message_type: str, data: Any) -> None:
        waiters = self._waiters.get(message_type)
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(data if data is not None else {})
                return

    def _emit(self, event: str, data: Any) -> None:
        # Handlers run in their own task, in order, so one may await presence() or refresh() without deadlock.
        self._events.put_nowait((event, data))

    async def _dispatch(self) -> None:
        while True:
            event, data = await self._events.get()
            try:
                for handler in list(self.handlers.get(event, [])):
                    try:
                        result = handler(data)
                        if inspect.isawaitable(result):
                            await result
                    except Exception:
                        logger.exception("Handler for %s failed", event)
            finally:
                self._events.task_done()

    async def _refresh_loop(self) -> None:
        """Renew a JWT in-band before it expires, with a token from the provider."""
        while self.token_provider is not None and self.token is not None:
            expiry = jwt_expiry(self.token)
            if expiry is None:
                return  # an API key does not expire
            await asyncio.sleep(refresh_delay(expiry - time.time()))
            if jwt_expiry(self.token) != expiry:
                continue  # refreshed meanwhile
            try:
                await self.refresh(await _call(self.token_provider))
            except ConnectionError:
                return
            except Exception as error:
                logger.warning("Token refresh failed: %s", error)
                await asyncio.sleep(1)  # then again at 80% of what is left

    async def _keepalive_loop(self, ws: ClientConnection) -> None:
        """Heartbeat: a `ping` after `keepalive` seconds with nothing sent or nothing received.

        Nothing sent: the server closes idle sockets (4008). Nothing received: the link may be dead; without a
        `pong` within the reply timeout the connection is dropped and the client reconnects.
        """
        while True:
            quiet = self._clock() - min(self._last_sent, self._last_received)
            if quiet < self.keepalive:
                await self._sleep(self.keepalive - quiet)
                continue
            try:
                await self._request("ping", None, "pong")
            except TimeoutError:
                logger.warning("No `pong` within %s s: dropping the connection", self.reply_timeout)
                ws.transport.abort()
                return
            except ConnectionError:
                return

    def _parse(self, raw: str | bytes) -> dict[str, Any] | None:
        try:
            if isinstance(raw, bytes) and self.connection_encoding == "msgpack":
                frame = self._msgpack.unpackb(raw)
            else:
                frame = json.loads(raw)
        except (ValueError, TypeError) as error:  # msgpack's unpack errors are ValueErrors too
            logger.error("Failed to parse message (%s): %.200r", type(error).__name__, raw)
            return None
        return frame if isinstance(frame, dict) and isinstance(frame.get("type"), str) else None
