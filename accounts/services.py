"""Business actions on tenants, users and API keys."""

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, Membership, Role, Tenant, hash_api_key


def tenant_create(*, slug: str, name: str = "") -> Tenant:
    """Create a tenant; the name defaults to the slug."""
    tenant = Tenant(slug=slug, name=name or slug)
    tenant.full_clean()
    tenant.save()
    return tenant


@transaction.atomic
def user_create(
    *, username: str, tenant: Tenant, role: str = Role.MEMBER, password: str | None = None, email: str = ""
) -> AbstractBaseUser:
    """Create a user and their one membership; no password means they log in with API keys only."""
    user = get_user_model().objects.create_user(username=username, email=email, password=password)
    Membership.objects.create(user=user, tenant=tenant, role=role)
    return user


def api_key_create(*, user: AbstractBaseUser, name: str = "") -> tuple[ApiKey, str]:
    """Create an API key and return it with the full key, which is never stored."""
    key = ApiKey.generate()
    api_key = ApiKey.objects.create(user=user, name=name, prefix=key[:12], key_hash=hash_api_key(key))
    return api_key, key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key; revoking twice keeps the first time."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key
