"""Every patch of a library's private names, with the versions it was written for, and the guard that checks them."""

# Each patching module calls check(<its name>) when it installs its patches: a private name
# that is gone, or a library version outside the range below, stops the server with one line
# instead of switching a fix off in silence (a renamed `dataBuffer` would read as 0 unsent
# bytes, and backpressure would be gone). To move to a new version: read the patched code
# against the new release, then widen the range here (docs/architecture.md).

import functools
import importlib
import inspect
import re
from dataclasses import dataclass
from importlib import metadata


class PatchError(RuntimeError):
    """A patch's library is missing a name it touches, or is of a version it was not written for."""


@dataclass(frozen=True)
class Patch:
    """One module's patches of one library: the versions they were written for and the names they touch."""

    library: str  # the distribution, as pip names it
    versions: tuple[str, str]  # the lowest version, and the first one not supported
    names: tuple[str, ...]  # dotted: module, then class and attribute (class or instance attributes)


PATCHES: dict[str, tuple[Patch, ...]] = {
    # Close codes, unsent-byte bounds and the connection in the scope, shared compressed frames, and what an
    # open connection lets go of (the handshake's leftovers, daphne's queue, autobahn's frame masker).
    "realtime.daphne": (
        Patch(
            library="daphne",
            versions=("4.2.2", "4.3"),
            names=(
                "daphne.ws_protocol.WebSocketProtocol.serverClose",
                "daphne.ws_protocol.WebSocketProtocol.serverSend",
                "daphne.ws_protocol.WebSocketProtocol.serverAccept",
                "daphne.ws_protocol.WebSocketProtocol.onClose",
                "daphne.ws_protocol.WebSocketProtocol.onOpen",
                "daphne.ws_protocol.WebSocketProtocol.client_addr",
                "daphne.ws_protocol.WebSocketProtocol.server",
                "daphne.ws_protocol.WebSocketProtocol.request",
                "daphne.ws_protocol.WebSocketProtocol.clean_headers",
                "daphne.ws_protocol.WebSocketProtocol.server_addr",
                "daphne.ws_protocol.WebSocketFactory.__init__",
                "daphne.ws_protocol.WebSocketFactory.protocol",
                "daphne.server.Server.application",
                "daphne.server.Server.create_application",
                "daphne.server.Server.handle_reply",
                "daphne.server.Server.connections",
            ),
        ),
        Patch(
            library="Twisted",
            versions=("26.10", "27"),
            names=(
                # The transport's send buffers, read by unsent_bytes() and emptied on a drop.
                "twisted.internet.tcp.Connection.dataBuffer",
                "twisted.internet.tcp.Connection.offset",
                "twisted.internet.tcp.Connection._tempDataBuffer",
                "twisted.internet.tcp.Connection._tempDataLen",
                "twisted.internet.tcp.Connection.abortConnection",
                # The HTTP channel that carried an upgrade, unregistered as the transport's producer once open.
                "twisted.internet.tcp.Connection.producer",
                "twisted.internet.tcp.Connection.unregisterProducer",
                "twisted.web.http.HTTPChannel._handlingRequest",
            ),
        ),
        Patch(
            library="autobahn",
            versions=("26.11", "27"),
            names=(
                "autobahn.websocket.protocol.WebSocketProtocol.sendCloseFrame",
                "autobahn.websocket.protocol.WebSocketProtocol.sendMessage",
                "autobahn.websocket.protocol.WebSocketProtocol.state",
                "autobahn.websocket.protocol.WebSocketProtocol.STATE_CONNECTING",
                "autobahn.websocket.protocol.WebSocketProtocol.STATE_OPEN",
                "autobahn.websocket.protocol.WebSocketProtocol.STATE_CLOSING",
                "autobahn.websocket.protocol.WebSocketProtocol._fail_connection",
                "autobahn.websocket.protocol.WebSocketProtocol._perMessageCompress",
                "autobahn.websocket.protocol.WebSocketProtocol.send_queue",
                "autobahn.websocket.protocol.WebSocketProtocol.onFrameEnd",
                "autobahn.websocket.protocol.WebSocketProtocol.current_frame_masker",
                # What the opening handshake leaves on a connection (realtime.daphne._HANDSHAKE_ATTRIBUTES; its
                # http_status_line and http_headers are set together, in a tuple assignment the guard cannot see).
                "autobahn.websocket.protocol.WebSocketServerProtocol.http_request_data",
                "autobahn.websocket.protocol.WebSocketServerProtocol.http_request_uri",
                "autobahn.websocket.protocol.WebSocketServerProtocol.http_request_host",
                "autobahn.websocket.protocol.WebSocketServerProtocol.http_request_path",
                "autobahn.websocket.protocol.WebSocketServerProtocol.http_request_params",
                "autobahn.websocket.protocol.WebSocketServerProtocol.http_response_data",
                "autobahn.websocket.protocol.WebSocketServerProtocol.websocket_extensions",
                "autobahn.websocket.protocol.WebSocketServerProtocol.websocket_extensions_in_use",
                "autobahn.websocket.protocol.WebSocketServerProtocol.websocket_protocols",
                "autobahn.websocket.protocol.WebSocketServerProtocol._wskey",
                "autobahn.websocket.protocol.WebSocketServerProtocol._transport_details",
                # Options a connection copies from its factory (set with setProtocolOptions).
                "autobahn.websocket.protocol.WebSocketServerFactory.autoFragmentSize",
                "autobahn.websocket.protocol.WebSocketServerFactory.maxMessagePayloadSize",
                "autobahn.websocket.protocol.WebSocketServerFactory.failByDrop",
                "autobahn.websocket.protocol.WebSocketServerFactory.closeHandshakeTimeout",
                "autobahn.websocket.protocol.WebSocketServerFactory.perMessageCompressionAccept",
                "autobahn.websocket.compress.PerMessageDeflate.start_compress_message",
                "autobahn.websocket.compress.PerMessageDeflate.end_compress_message",
                "autobahn.websocket.compress.PerMessageDeflate.end_decompress_message",
                "autobahn.websocket.compress.PerMessageDeflate._decompressor",
                "autobahn.websocket.compress.PerMessageDeflate._is_server",
                "autobahn.websocket.compress.PerMessageDeflate._compressor",
                "autobahn.websocket.compress.PerMessageDeflate.server_no_context_takeover",
                "autobahn.websocket.compress.PerMessageDeflate.client_no_context_takeover",
                "autobahn.websocket.compress.PerMessageDeflate.server_max_window_bits",
                "autobahn.websocket.compress.PerMessageDeflate.client_max_window_bits",
                "autobahn.websocket.compress.PerMessageDeflate.mem_level",
                "autobahn.websocket.compress.PerMessageDeflateOfferAccept.get_extension_string",
                "autobahn.websocket.compress.PerMessageDeflateOfferAccept.no_context_takeover",
            ),
        ),
    ),
    # JSON answers to what Twisted refuses, and a deadline for request headers.
    "puomemo.http_limits": (
        Patch(
            library="daphne",
            versions=("4.2.2", "4.3"),
            names=("daphne.http_protocol.HTTPFactory.protocol",),
        ),
        Patch(
            library="Twisted",
            versions=("26.10", "27"),
            names=(
                "twisted.web.http.HTTPChannel.lineLengthExceeded",
                "twisted.web.http.HTTPChannel.lineReceived",
                "twisted.web.http.HTTPChannel._respondToBadRequestAndDisconnect",
                "twisted.web.http.HTTPChannel._HTTPChannel__first_line",
                "twisted.web.http.HTTPChannel._receivedHeaderSize",
                "twisted.web.http.HTTPChannel._networkProducer",
                "twisted.web.http.HTTPChannel.totalHeadersSize",
                "twisted.web.http.HTTPChannel.persistent",
                "twisted.web.http.HTTPChannel.allHeadersReceived",
                "twisted.web.http.HTTPChannel.requestDone",
                "twisted.web.http._GenericHTTPChannelProtocol",
            ),
        ),
    ),
    # A transaction's group sends pipelined into one round trip, through the pub/sub layer's shards.
    "realtime.layers": (
        Patch(
            library="channels-redis",
            versions=("4.3", "4.4"),
            names=(
                "channels_redis.pubsub.RedisPubSubChannelLayer._get_layer",
                "channels_redis.pubsub.RedisPubSubLoopLayer._get_shard",
                "channels_redis.pubsub.RedisPubSubLoopLayer._get_group_channel_name",
                "channels_redis.pubsub.RedisSingleShardConnection._lock",
                "channels_redis.pubsub.RedisSingleShardConnection._redis",
                "channels_redis.pubsub.RedisSingleShardConnection._ensure_redis",
            ),
        ),
    ),
}


def version_tuple(version: str) -> tuple[int, ...]:
    """The release numbers of a version string: '26.10.0rc1' -> (26, 10, 0)."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    if match is None:
        raise PatchError(f"cannot read the version {version!r}")
    numbers = [int(part) for part in match.group().split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


@functools.cache
def _source(klass: type) -> str:
    try:
        return inspect.getsource(klass)
    except (OSError, TypeError):  # built in, or no source shipped
        return ""


def _assigned_in_source(cls: type, name: str) -> bool:
    """Whether a class or one of its bases assigns `self.<name>` (an attribute only instances have)."""
    pattern = re.compile(rf"self\.{re.escape(name)}\s*(?::[^=\n]+)?=(?!=)")
    return any(pattern.search(_source(klass)) for klass in inspect.getmro(cls))


def has_name(dotted: str) -> bool:
    """Whether a dotted name exists: a module, then attributes, the last one perhaps set on instances only."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        rest = parts[split:]
        break
    else:
        return False
    for index, part in enumerate(rest):
        if hasattr(found, part):
            found = getattr(found, part)
        elif index == len(rest) - 1 and inspect.isclass(found):
            return _assigned_in_source(found, part)
        else:
            return False
    return True


def check_patch(where: str, patch: Patch, *, installed: str | None = None) -> None:
    """Raise PatchError in one line unless the library's version (or `installed`) is in range and every name exists."""
    if installed is None:
        try:
            installed = metadata.version(patch.library)
        except metadata.PackageNotFoundError:
            raise PatchError(f"{where} patches {patch.library}, which is not installed; refusing to start.") from None
    low, high = patch.versions
    if not version_tuple(low) <= version_tuple(installed) < version_tuple(high):
        raise PatchError(
            f"{where} patches {patch.library} {installed}, but was written for >={low},<{high}: refusing to start"
            f" (check the patch against this version, then widen its range in puomemo/patches.py)."
        )
    missing = [name for name in patch.names if not has_name(name)]
    if missing:
        raise PatchError(
            f"{where} patches {patch.library} {installed}, which has no {', '.join(missing)}: refusing to start"
            f" (see puomemo/patches.py)."
        )


# The modules whose patches passed: the versions and names do not change while a process runs.
_passed: set[str] = set()


def check(where: str) -> None:
    """Check every patch the module `where` installs; PatchError (one line) on the first that does not fit."""
    if where in _passed:
        return
    for patch in PATCHES[where]:
        check_patch(where, patch)
    _passed.add(where)


def check_all() -> None:
    """Check every patch in the table."""
    for where in PATCHES:
        check(where)
