"""Run the embeddings worker in its own process."""

from django.core.management.base import BaseCommand

from memories.worker import embedding_worker, run_worker


class Command(BaseCommand):
    help = "Run the embeddings worker: embed anything left pending, then every memory queued, until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between polls when idle.")

    def handle(self, *args, interval: float, **options):
        worker = embedding_worker(interval=interval)
        worker.configure_signals()
        self.stdout.write("Embeddings worker started.")
        run_worker(worker)
