"""Run the embeddings worker in its own process."""

import signal

from django.core.management.base import BaseCommand

from memories.worker import EmbeddingWorker


class Command(BaseCommand):
    help = "Run the embeddings worker: embed every memory that is due, looking again every --interval s, until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between looks for due memories.")

    def handle(self, *args, interval: float, **options):
        worker = EmbeddingWorker(interval=interval)
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: worker.stop())
        self.stdout.write("Embeddings worker started.")
        worker.run()
