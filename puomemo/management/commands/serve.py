"""Serve the ASGI app with daphne, its WebSocket limits derived from the settings, on every core."""

import argparse
import asyncio
import logging
import signal
import sys
import time

from asgiref.sync import sync_to_async
from daphne.cli import CommandLineInterface
from daphne.server import Server
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from accounts.access import prune_access_changes
from memories import embeddings
from memories.services import trash_purge
from memories.worker import EmbeddingWorker
from puomemo import draining, patches, prefork
from realtime.log import prune_events
from realtime.node import node
from realtime.protocol import CloseCode

logger = logging.getLogger(__name__)

# daphne accepts a frame a little over our limit, so the application refuses it
# with 1009 itself; larger ones get 1009 from autobahn, unread (realtime/daphne.py,
# docs/architecture.md).
DAPHNE_HEADROOM_BYTES = 64 * 1024

# How often a serving process prunes the event log.
PRUNE_SECONDS = 3600

# daphne resets a handshake its application has not accepted within this (its default: 5 s). The application
# accepts at once, but in a reconnect storm its turn can come later: the client, which gives up after its own
# wait (10 s), must decide, not a TCP reset that the proxy answers with 502.
WEBSOCKET_CONNECT_TIMEOUT_SECONDS = 30

# How long the reactor waits after the 1012 closes so the frames leave the sockets.
SHUTDOWN_FLUSH_SECONDS = 0.5
# On SIGTERM, the longest the HTTP requests in flight may take to finish before the process stops anyway,
# and how long (from the SIGTERM) idle keep-alive connections may stay for the proxy to close them.
SHUTDOWN_DRAIN_SECONDS = 10
# Longer than the proxy keeps an idle upstream connection (docker/nginx.conf: keepalive_timeout 2s), so that the
# proxy closes the idle ones itself rather than the process closing one under a request the proxy is writing.
SHUTDOWN_IDLE_SECONDS = 4


class _Server(Server):
    """daphne's server, whose access log leaves out query strings: a ?token= or ?ticket= never reaches it."""

    def log_action(self, protocol: str, action: str, details: dict) -> None:
        # WebSocket lines have only the path; HTTP lines had the whole URI, so a /ws request
        # that was not upgraded (a proxy dropping the header) logged its token.
        if "path" in details:
            details = {**details, "path": details["path"].split("?", 1)[0]}
        super().log_action(protocol, action, details)


class _CommandLineInterface(CommandLineInterface):
    server_class = _Server


def _close_connections_on_shutdown() -> None:
    """Tell clients the instance restarts (1012: they come back at once) instead of dropping their TCP connections.

    On SIGTERM the process first drains (_drain) and only then stops the reactor, whose shutdown cancels
    whatever still runs; other stops (SIGINT) close the WebSockets with 1012 at once.
    """
    import daphne.server  # noqa: F401  (installs the asyncio reactor before twisted's default)
    from twisted.internet import defer, reactor

    async def close_all() -> None:
        await node().hub().close_all(CloseCode.SERVICE_RESTART)
        # What the publisher still holds (presence, access changes are never logged) goes out first.
        await asyncio.to_thread(node().publisher.wait, SHUTDOWN_FLUSH_SECONDS)
        await asyncio.sleep(SHUTDOWN_FLUSH_SECONDS)

    def before_shutdown():
        return defer.Deferred.fromFuture(asyncio.ensure_future(close_all()))

    async def drain_then_stop() -> None:
        try:
            await _drain(close_all)
        finally:
            if reactor.running:  # a SIGINT meanwhile may have stopped it
                reactor.stop()

    draining_started = False

    def on_sigterm() -> None:
        # Once is enough: a second SIGTERM (`make run` passes its own on to serve, in the group that got one)
        # would start a second drain and stop the reactor twice.
        nonlocal draining_started
        if not draining_started:
            draining_started = True
            _background.add(asyncio.ensure_future(drain_then_stop()))

    # Twisted's own SIGTERM handler would stop the reactor at once: in-flight requests would be cut off.
    reactor.callWhenRunning(lambda: asyncio.get_event_loop().add_signal_handler(signal.SIGTERM, on_sigterm))
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


async def _drain(close_all) -> None:
    """Stop accepting, let every HTTP request in flight finish and close its connection, close WebSockets with 1012."""
    # A proxy in front (docker/nginx.conf) then finds the port refused and sends new requests and handshakes to
    # another instance, which is safe to retry even for a POST: nothing was sent. Its keep-alive connections here
    # it closes itself, after a response (`Connection: close`), so it is not writing to one as the process exits.
    from twisted.internet import reactor, tcp
    from twisted.web.http import HTTPChannel

    def http_channels() -> list[HTTPChannel]:
        protocols = [getattr(reader, "protocol", None) for reader in reactor.getReaders()]
        # Twisted's HTTPFactory wraps each channel in a proxy (_GenericHTTPChannelProtocol, for ALPN): unwrap it.
        channels = [getattr(protocol, "_channel", protocol) for protocol in protocols]
        return [channel for channel in channels if isinstance(channel, HTTPChannel)]

    for reader in reactor.getReaders():
        if isinstance(reader, tcp.Port):
            # Connections the kernel completed but the process has not accepted yet would be reset with the socket,
            # and the proxy may have written a POST on one: take them first (they are answered `Connection: close`).
            reader.doRead()
            reader.stopListening()
    # The proxy closes each keep-alive connection after its next response, and finds the port refused when it
    # opens another; the idle ones it closes after its keep-alive timeout.
    draining.draining = True
    for channel in http_channels():
        if channel.requests:
            # Closed once its request is answered. (An idle channel made so would drop its next request unread.)
            channel.persistent = False
    await close_all()
    started = time.monotonic()
    deadline = started + SHUTDOWN_DRAIN_SECONDS
    while any(channel.requests for channel in http_channels()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    # Time for the proxy to use up or time out (and close) its idle keep-alive connections here.
    while http_channels() and time.monotonic() < started + SHUTDOWN_IDLE_SECONDS:
        await asyncio.sleep(0.05)
    # The reactor's shutdown cancels what still runs: close the idle ones now, the busy ones after their answer.
    for channel in http_channels():
        if not channel.requests:
            channel.loseConnection()


_background: set[asyncio.Future] = set()


def _tcp_endpoint(host: str, port: int) -> str:
    """daphne's endpoint for host and port, with the accept queue the workers' sockets have (prefork.BACKLOG)."""
    # Twisted's default queue of 50 overflows in a reconnect storm: handshakes then wait for SYN
    # retransmits, or the proxy in front gives up on the instance.
    interface = host.strip("[]").replace(":", "\\:")
    return f"tcp:port={port}:interface={interface}:backlog={prefork.BACKLOG}"


def _on_a_thread_once_running(function, *args) -> None:
    """Run a blocking function on a thread once the server runs.

    Started through sync_to_async, whatever it publishes reaches the server's
    event loop, which the in-process channel layer of the embedded default needs.
    """
    from twisted.internet import reactor

    def start() -> None:
        _background.add(asyncio.ensure_future(sync_to_async(function, thread_sensitive=False)(*args)))

    reactor.callWhenRunning(start)


def _prune_the_event_log_hourly() -> None:
    """Keep the event log (and the access-change marks, and the trash) within retention while serving; a failure
    waits an hour."""
    from twisted.internet import reactor, task, threads

    def prune():
        deferred = threads.deferToThread(lambda: (prune_events(), prune_access_changes(), trash_purge()))
        deferred.addErrback(lambda failure: logger.error("Pruning the event log failed: %s", failure.value))
        return deferred

    reactor.callWhenRunning(task.LoopingCall(prune).start, PRUNE_SECONDS, now=True)


def default_workers() -> int:
    """Every core with Redis; one process for the embedded default (no REDIS_URL)."""
    return prefork.default_workers() if settings.REDIS_ENABLED else 1


class Command(BaseCommand):
    help = (
        "Serve PUO Memo (HTTP and /ws) with daphne: with REDIS_URL set, one daphne process per core sharing one "
        "port (--workers); without it (the embedded default: in-process channel layer and connection counts) "
        "one process, since other processes would see its writes only through the 1 s event-log poll."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-worker",
            action="store_true",
            help="Do not run the embeddings worker in this serve (run `manage.py embed_worker` instead).",
        )
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="daphne processes sharing the port (default: the number of cores with REDIS_URL, else 1; more "
            "than 1 needs REDIS_URL). One embeddings worker thread whatever the count.",
        )
        parser.add_argument(
            "--shared-socket",
            action="store_true",
            help="Have the workers accept from one listening socket, rather than each from its own on the port "
            "(SO_REUSEPORT, the default: the kernel spreads the connections over them evenly).",
        )
        parser.add_argument("--proxy-headers", action="store_true", help="Trust X-Forwarded-For (behind nginx).")
        parser.add_argument(
            "--preload-model",
            action="store_true",
            help="Load the embedding model at start (~+100 MiB a worker process, mostly shared pages) rather than "
            "on the first search or embedding.",
        )
        # Set by the parent for its workers: the inherited socket's endpoint and the worker's number.
        parser.add_argument("--worker-endpoint", help=argparse.SUPPRESS)
        parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)

    def handle(
        self,
        *args,
        host: str,
        port: int,
        workers: int | None,
        proxy_headers: bool,
        no_worker: bool,
        preload_model: bool,
        shared_socket: bool,
        worker_endpoint: str | None,
        worker_index: int,
        **options,
    ):
        patches.check_all()  # before daphne starts: a patch that no longer fits stops it in one line (manage.py)
        if workers is not None and workers < 1:
            raise CommandError("--workers must be at least 1.")
        if workers is not None and workers > 1 and not settings.REDIS_ENABLED:
            raise CommandError(
                f"--workers {workers} needs REDIS_URL: without Redis each process has its own channel layer and "
                "connection counts, so the embedded default serves from one process."
            )
        count = default_workers() if workers is None else workers
        if worker_endpoint is None and count > 1:
            reuse_port = not shared_socket and sys.platform.startswith("linux")  # elsewhere it does not balance
            return self.supervise(count, host, port, proxy_headers, no_worker, preload_model, reuse_port)
        first = worker_index == 0  # the one process (or worker) that prunes and runs the embeddings worker
        daphne_max = settings.PUOMEMO_WS_MAX_MESSAGE_BYTES + DAPHNE_HEADROOM_BYTES
        heartbeat = settings.PUOMEMO_WS_HEARTBEAT_SECONDS
        argv = [
            "-e", worker_endpoint or _tcp_endpoint(host, port),
            "--websocket-max-message-size", str(daphne_max),
            "--websocket-max-frame-size", str(daphne_max),
            "--ping-interval", str(heartbeat),
            "--ping-timeout", str(heartbeat),
            "--websocket_connect_timeout", str(WEBSOCKET_CONNECT_TIMEOUT_SECONDS),
            *(["--proxy-headers"] if proxy_headers else []),
            "puomemo.asgi:application",
        ]  # fmt: skip
        _close_connections_on_shutdown()
        if first:
            _prune_the_event_log_hourly()
        if preload_model:
            _on_a_thread_once_running(embeddings.model)  # so that no search waits for the model
        if not no_worker and first:
            from twisted.internet import reactor

            worker = EmbeddingWorker()
            reactor.addSystemEventTrigger("before", "shutdown", worker.stop)
            _on_a_thread_once_running(worker.run)
        # The access log goes to stdout: a line each, as it happens, also when stdout is a file or a pipe.
        sys.stdout.reconfigure(line_buffering=True)
        if not worker_endpoint:
            self.stdout.write(f"Serving PUO Memo on http://{host}:{port} (WebSocket at ws://{host}:{port}/ws)")
        _CommandLineInterface().run(argv)

    def supervise(
        self,
        count: int,
        host: str,
        port: int,
        proxy_headers: bool,
        no_worker: bool,
        preload_model: bool,
        reuse_port: bool,
    ) -> None:
        """Bind host:port, then become the parent of `count` worker processes on it (puomemo/prefork.py)."""
        try:
            sockets = prefork.bind_all(host, port, count, reuse_port=reuse_port)
        except OSError as error:
            raise CommandError(f"Cannot listen on {host}:{port}: {error.strerror}.") from None
        except ValueError as error:
            raise CommandError(f"{error}; serve with --workers 1.") from None
        flags = [
            *(["--proxy-headers"] if proxy_headers else []),
            *(["--no-worker"] if no_worker else []),
            *(["--preload-model"] if preload_model else []),
        ]
        command = [
            sys.executable, str(settings.BASE_DIR / "manage.py"), "serve",
            "--host", host, "--port", str(port), "--workers", str(count), *flags,
        ]  # fmt: skip
        self.stdout.write(
            f"Serving PUO Memo on http://{host}:{port} (WebSocket at ws://{host}:{port}/ws) with {count} workers"
        )
        for connection in connections.all(initialized_only=True):  # the startup checks' (exec drops the rest)
            connection.close()
            if hasattr(connection, "close_pool"):
                connection.close_pool()
        prefork.exec_supervisor(sockets, count, command)  # does not return; exits as the workers do
