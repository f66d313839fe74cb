"""Serve the ASGI app with daphne, its WebSocket limits derived from the settings."""

import asyncio
import logging

from asgiref.sync import sync_to_async
from daphne.cli import CommandLineInterface
from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.access import prune_access_changes
from memories import embeddings
from memories.worker import embedding_worker, run_worker
from puomemo import patches
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

# How long the reactor waits after the 1012 closes so the frames leave the sockets.
SHUTDOWN_FLUSH_SECONDS = 0.5


def _close_connections_on_shutdown() -> None:
    """Tell clients the instance restarts (1012: they come back at once) instead of dropping their TCP connections."""
    import daphne.server  # noqa: F401  (installs the asyncio reactor before twisted's default)
    from twisted.internet import defer, reactor

    async def close_all() -> None:
        await node().hub().close_all(CloseCode.SERVICE_RESTART)
        await asyncio.sleep(SHUTDOWN_FLUSH_SECONDS)

    def before_shutdown():
        return defer.Deferred.fromFuture(asyncio.ensure_future(close_all()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


_background: set[asyncio.Future] = set()


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
    """Keep the event log (and the access-change marks) within retention while serving; a failure waits an hour."""
    from twisted.internet import reactor, task, threads

    def prune():
        deferred = threads.deferToThread(lambda: (prune_events(), prune_access_changes()))
        deferred.addErrback(lambda failure: logger.error("Pruning the event log failed: %s", failure.value))
        return deferred

    reactor.callWhenRunning(task.LoopingCall(prune).start, PRUNE_SECONDS, now=True)


class Command(BaseCommand):
    help = "Serve PUO Memo (HTTP and /ws) with daphne."

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-worker",
            action="store_true",
            help="Do not run the embeddings worker in this process (run `manage.py embed_worker` instead).",
        )
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--proxy-headers", action="store_true", help="Trust X-Forwarded-For (behind nginx).")
        parser.add_argument(
            "--preload-model",
            action="store_true",
            help="Load the embedding model at start (~+100 MiB) rather than on the first search or embedding.",
        )

    def handle(self, *args, host: str, port: int, proxy_headers: bool, no_worker: bool, preload_model: bool, **options):
        patches.check_all()  # before daphne starts: a patch that no longer fits stops it in one line (manage.py)
        daphne_max = settings.PUOMEMO_WS_MAX_MESSAGE_BYTES + DAPHNE_HEADROOM_BYTES
        heartbeat = settings.PUOMEMO_WS_HEARTBEAT_SECONDS
        argv = [
            "-b", host,
            "-p", str(port),
            "--websocket-max-message-size", str(daphne_max),
            "--websocket-max-frame-size", str(daphne_max),
            "--ping-interval", str(heartbeat),
            "--ping-timeout", str(heartbeat),
            *(["--proxy-headers"] if proxy_headers else []),
            "puomemo.asgi:application",
        ]  # fmt: skip
        _close_connections_on_shutdown()
        _prune_the_event_log_hourly()
        if preload_model:
            _on_a_thread_once_running(embeddings.model)  # so that no search waits for the model
        if not no_worker:
            from twisted.internet import reactor

            worker = embedding_worker()
            reactor.addSystemEventTrigger("before", "shutdown", setattr, worker, "running", False)
            _on_a_thread_once_running(run_worker, worker)
        self.stdout.write(f"Serving PUO Memo on http://{host}:{port} (WebSocket at ws://{host}:{port}/ws)")
        CommandLineInterface().run(argv)
