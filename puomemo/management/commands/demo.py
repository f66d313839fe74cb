from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Role, Tenant
from accounts.principal import Principal
from accounts.services import user_create
from memories.models import Memory, Visibility
from memories.services import memory_create

DEMO_PASSWORD = "demo-password"  # noqa: S105  (printed for the demo on purpose)
USERS = [("alice", Role.ADMIN), ("bob", Role.MEMBER), ("carol", Role.GUEST)]
MEMORIES = [
    ("alice", "Welcome to PUO Memo", "Memories sync live to everyone who may see them.", ["welcome"], "public"),
    ("alice", "Team standup", "Standup moves to 9:30 from Monday.", ["team", "meetings"], "team"),
    ("bob", "I adopted a puppy", "Her name is Miso and she chews everything.", ["personal"], "private"),
    ("bob", "Quarterly tax filing", "Send the receipts to accounting by the 15th.", ["finance"], "team"),
]


class Command(BaseCommand):
    help = "Seed a demo tenant with an admin, a member, a guest and a few memories (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Where the server will be, for the hints.")

    @transaction.atomic
    def handle(self, *args, url: str, **options):
        tenant, _ = Tenant.objects.get_or_create(slug="demo", defaults={"name": "Demo team"})
        User = get_user_model()
        for username, role in USERS:
            if not User.objects.filter(username=username).exists():
                user_create(username=username, tenant=tenant, role=role, password=DEMO_PASSWORD)
                self.stdout.write(f"  created {role} {username}")
        # Django admin is for the service's operators, who see every tenant; no tenant user is staff.
        if not User.objects.filter(username="operator").exists():
            User.objects.create_superuser("operator", password=DEMO_PASSWORD)
            self.stdout.write("  created operator (Django admin)")
        if not Memory.objects.filter(tenant=tenant).exists():
            for username, title, content, tags, visibility in MEMORIES:
                author = Principal.from_membership(User.objects.get(username=username).membership)
                memory_create(author=author, title=title, content=content, tags=tags, visibility=Visibility(visibility))
            self.stdout.write(f"  created {len(MEMORIES)} memories")
        self.stdout.write(self.style.SUCCESS("Demo tenant 'demo' is ready."))
        self.stdout.write(f"Log in as alice (admin), bob (member) or carol (guest) with password {DEMO_PASSWORD!r}")
        self.stdout.write(f"Web UI: {url}/")
        self.stdout.write("REST: a token for the API and /ws")
        self.stdout.write(
            f"  curl -s -X POST {url}/api/v4/auth/token/ -H 'Content-Type: application/json' "
            f"""-d '{{"username": "alice", "password": "{DEMO_PASSWORD}"}}'"""
        )
        self.stdout.write(f"Django admin: {url}/admin/ (operator, same password)")
