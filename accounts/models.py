"""Tenants, the one membership each user has, and API keys."""

import hashlib
import secrets

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

API_KEY_PREFIX = "pm_"


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    GUEST = "guest", "Guest"


class Tenant(models.Model):
    # Slugs become part of channel-layer group names, which allow only ASCII.
    slug = models.SlugField(max_length=50, unique=True, validators=[RegexValidator(r"^[a-z0-9-]+$")])
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        # The tenant it was loaded in: when a save moves it, that tenant's sockets of the user must close too.
        instance.loaded_tenant_id = instance.tenant_id
        return instance


def hash_api_key(key: str) -> str:
    """Hash a full API key; keys are random enough that a plain SHA-256 suffices."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKey(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    @staticmethod
    def generate() -> str:
        """Make a new full key; it is shown once and only its hash is stored."""
        return API_KEY_PREFIX + secrets.token_urlsafe(32)


class LoginFailure(models.Model):
    """Failed password logins of one username from one address, since `first_at` (the throttle's window)."""

    address = models.CharField(max_length=64)
    username = models.CharField(max_length=150)  # as typed (casefolded): it need not exist
    failures = models.PositiveIntegerField(default=0)
    first_at = models.DateTimeField(db_index=True)
    last_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["address", "username"], name="one_login_failure_row")]

    def __str__(self) -> str:
        return f"{self.username} from {self.address}: {self.failures}"


class AccessChangeMark(models.Model):
    """A row per write that changed who may connect (memberships, users, API keys), added by database triggers.

    Every server process polls the newest id, so even a QuerySet.update() or raw SQL,
    which send no signal, closes or re-filters open sockets within about a second.
    """

    id = models.BigAutoField(primary_key=True)

    def __str__(self) -> str:
        return f"access change {self.id}"
