"""Delete events beyond the log's retention (serve does this every hour by itself)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from realtime.log import prune_events


class Command(BaseCommand):
    help = "Delete logged events beyond retention: each tenant keeps its last N events and all younger than H hours."

    def handle(self, *args, **options):
        deleted = prune_events()
        keep, hours = settings.PUOMEMO_EVENT_LOG_MIN_EVENTS, settings.PUOMEMO_EVENT_LOG_MIN_HOURS
        self.stdout.write(f"Deleted {deleted} events (kept each tenant's last {keep} and the last {hours} h).")
