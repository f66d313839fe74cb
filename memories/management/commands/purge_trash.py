"""Delete for good the memories in the trash past the retention (serve does this every hour by itself)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from memories.services import trash_purge


class Command(BaseCommand):
    help = "Delete for good the memories deleted more than PUOMEMO_TRASH_RETENTION_DAYS days ago."

    def handle(self, *args, **options):
        purged = trash_purge()
        self.stdout.write(f"Purged {purged} memories (the trash keeps {settings.PUOMEMO_TRASH_RETENTION_DAYS} days).")
