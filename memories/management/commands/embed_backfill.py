"""Embed every memory that is pending, failed or missing its vector, in this process, with progress."""

from django.core.management.base import BaseCommand

from memories.embedding_service import embed_due_memories
from memories.models import EmbeddingStatus, Memory


class Command(BaseCommand):
    help = "Embed all pending, failed or missing embeddings now."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=64)

    def handle(self, *args, batch_size: int, **options):
        missing = Memory.objects.filter(embedding_status=EmbeddingStatus.READY, embedding__isnull=True)
        failed = Memory.objects.filter(embedding_status=EmbeddingStatus.FAILED)
        marked = missing.update(embedding_status=EmbeddingStatus.PENDING)
        marked += failed.update(embedding_status=EmbeddingStatus.PENDING, embedding_attempts=0)
        total = Memory.objects.filter(embedding_status=EmbeddingStatus.PENDING).count()
        self.stdout.write(f"{total} memories to embed ({marked} failed or missing, re-queued)")

        def progress(done: int) -> None:
            self.stdout.write(f"  {done}/{total} embedded")

        stored = embed_due_memories(batch_size=batch_size, progress=progress)
        self.stdout.write(self.style.SUCCESS(f"Embedded {stored} memories."))
