"""Re-index the SQLite keyword search table from the memories (after a VACUUM renumbered their rows)."""

import importlib

from django.core.management.base import BaseCommand
from django.db import connection, transaction

# The statements live with the migration that made the table, so that the two cannot drift apart.
fulltext = importlib.import_module("memories.migrations.0006_memory_fulltext")


class Command(BaseCommand):
    help = "Re-index SQLite's keyword search table (memories_memory_fts); PostgreSQL's index needs nothing."

    def handle(self, *args, **options):
        if connection.vendor != "sqlite":
            self.stdout.write("Nothing to do: PostgreSQL keeps its keyword index itself.")
            return
        with transaction.atomic(), connection.cursor() as cursor:
            for statement in fulltext.SQLITE_REINDEX:
                cursor.execute(statement)
            cursor.execute("SELECT count(*) FROM memories_memory")
            self.stdout.write(f"Re-indexed {cursor.fetchone()[0]} memories for keyword search.")
