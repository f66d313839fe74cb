"""Who is calling: one user in one tenant, resolved from a JWT, an API key or a browser session."""

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import API_KEY_PREFIX, ApiKey, Membership, hash_api_key

# Recording every use would turn each authenticated read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class InvalidToken(Exception):
    """The token is malformed, expired, forged or revoked, or its user may not log in."""


def display_name(user: AbstractBaseUser) -> str:
    """How events and pages name a user: the full name, else the username."""
    return user.get_full_name() or user.get_username()


@dataclass(frozen=True)
class Actor:
    """Who makes a change: REST and commands through a Principal, admin and bare ORM writes through a user."""

    user_id: int
    user_name: str

    @classmethod
    def of(cls, user: AbstractBaseUser) -> "Actor":
        return cls(user_id=user.pk, user_name=display_name(user))


@dataclass(frozen=True)
class Principal:
    user_id: int
    user_name: str
    tenant_id: int
    tenant_slug: str
    role: str
    api_key_id: int | None = None
    # When the credential stops being valid (a JWT's exp); None for API keys.
    expires_at: datetime | None = None
    # The browser session it came from (a web UI socket): it lasts only as long as that session.
    session_key: str | None = field(default=None, repr=False)
    # A JWT's password stamp: the token lasts only until the password changes.
    password_stamp: str | None = field(default=None, repr=False)

    @classmethod
    def from_membership(
        cls, membership: Membership, *, api_key_id: int | None = None, expires_at: datetime | None = None
    ) -> "Principal":
        user = membership.user
        return cls(
            user_id=user.pk,
            user_name=display_name(user),
            tenant_id=membership.tenant_id,
            tenant_slug=membership.tenant.slug,
            role=membership.role,
            api_key_id=api_key_id,
            expires_at=expires_at,
        )

    @property
    def actor(self) -> Actor:
        return Actor(user_id=self.user_id, user_name=self.user_name)


def password_stamp(user: AbstractBaseUser) -> str:
    """A short digest of the user's password hash: JWTs carry it, so a password change voids them (as sessions)."""
    return salted_hmac("puomemo.jwt.password-stamp", user.password, algorithm="sha256").hexdigest()[:16]


def _active_membership(user_id: int) -> Membership:
    membership = (
        Membership.objects.select_related("user", "tenant").filter(user_id=user_id, user__is_active=True).first()
    )
    if membership is None:
        raise InvalidToken("User is inactive or belongs to no tenant.")
    return membership


def authenticate_token(token: str) -> tuple[AbstractBaseUser, Principal]:
    """Resolve a bearer token (API key or JWT access token) to its user and principal, or raise InvalidToken."""
    if token.startswith(API_KEY_PREFIX):
        key = ApiKey.objects.filter(key_hash=hash_api_key(token), revoked_at__isnull=True).first()
        if key is None:
            raise InvalidToken("Unknown or revoked API key.")
        membership = _active_membership(key.user_id)
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return membership.user, Principal.from_membership(membership, api_key_id=key.pk)
    try:
        access = AccessToken(token)
    except TokenError:
        raise InvalidToken("Invalid or expired token.") from None
    membership = _active_membership(access.get("user_id"))
    # A token minted for another tenant (the user has since moved) is void.
    if access.get("tenant") != membership.tenant.slug:
        raise InvalidToken("Token does not belong to the user's tenant.")
    stamp = str(access.get("pwd", ""))
    if not constant_time_compare(stamp, password_stamp(membership.user)):
        raise InvalidToken("The password changed since this token was issued.")
    expires_at = datetime.fromtimestamp(access["exp"], tz=UTC)
    principal = Principal.from_membership(membership, expires_at=expires_at)
    return membership.user, replace(principal, password_stamp=stamp)


def principal_from_token(token: str) -> Principal:
    """Resolve a bearer token to a principal, or raise InvalidToken."""
    return authenticate_token(token)[1]


def principal_of_user(user_id: int, *, api_key_id: int | None = None) -> Principal:
    """A user's principal as the database has it now, through one of their unrevoked API keys if given."""
    if api_key_id is not None:
        key = ApiKey.objects.filter(pk=api_key_id, user_id=user_id, revoked_at__isnull=True)
        if not key.exists():
            raise InvalidToken("Unknown or revoked API key.")
    return Principal.from_membership(_active_membership(user_id), api_key_id=api_key_id)


def session_authenticates(data: dict, user: AbstractBaseUser) -> bool:
    """Whether session data still logs this user in: not logged out, and no password change since (Django's rule)."""
    return data.get(SESSION_KEY) == str(user.pk) and constant_time_compare(
        data.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
    )


def principal_of_session(session) -> Principal:
    """The principal of a logged-in browser session (a SessionStore), or raise InvalidToken."""
    if session is None or not session.session_key:
        raise InvalidToken("No session.")
    data = session.load()
    user = get_user_model().objects.filter(pk=data.get(SESSION_KEY) or None).first()
    if user is None or not session_authenticates(data, user):
        raise InvalidToken("The session is logged out, or its password changed.")
    return replace(principal_of_user(user.pk), session_key=session.session_key)
