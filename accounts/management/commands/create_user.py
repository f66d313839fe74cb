from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Role, Tenant
from accounts.services import user_create


class Command(BaseCommand):
    help = "Create a user in a tenant, non-interactively."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--tenant", required=True, help="The tenant's slug.")
        parser.add_argument("--role", choices=Role.values, default=Role.MEMBER)
        parser.add_argument("--password", help="Without one the user can only use API keys.")

    def handle(self, *args, username: str, tenant: str, role: str, password: str | None, **options):
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"No tenant {tenant!r}; create it with create_tenant.")
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(f"User {username!r} already exists.")
        user_create(username=username, tenant=found, role=role, password=password)
        self.stdout.write(self.style.SUCCESS(f"Created {role} {username} in {tenant}"))
