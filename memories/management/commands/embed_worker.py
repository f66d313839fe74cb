"""Run the embeddings worker in its own process."""

import signal
import threading

from django.core.management.base import BaseCommand

from memories.worker import EmbeddingWorker


class Command(BaseCommand):
    help = "Run the embeddings worker: embed every memory that is due, looking again every --interval s, until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between looks for due memories.")

    def handle(self, *args, interval: float, **options):
        worker = EmbeddingWorker(interval=interval)

        def stop(*_) -> None:
            # From a thread: the handler runs on the main thread, which may hold the stop event's
            # own lock (inside its wait) when the signal lands.
            threading.Thread(target=worker.stop).start()

        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, stop)
        self.stdout.write("Embeddings worker started.")
        worker.run()
