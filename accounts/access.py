"""Access that changes while a connection is open: what a change means for a principal, and a re-check of many."""

import hashlib
from dataclasses import asdict, dataclass, replace
from importlib import import_module
from typing import Any

from django.conf import settings
from django.db.models import Count, Max

from accounts.models import AccessChangeMark, ApiKey, Membership
from accounts.principal import (
    InvalidToken,
    Principal,
    password_stamp,
    principal_from_token,
    session_authenticates,
)


@dataclass(frozen=True)
class AccessChange:
    """A user's access as it stands after a change: their tenant and role, or that they lost access."""

    user_id: int
    tenant_id: int | None = None  # None: no membership any more
    role: str = ""
    active: bool = True
    revoked_key_id: int | None = None  # only this API key was revoked
    ended_session: str | None = None  # only this browser session ended (logout): session_digest of its key

    @classmethod
    def of_membership(cls, membership: Membership) -> "AccessChange":
        return cls(
            user_id=membership.user_id,
            tenant_id=membership.tenant_id,
            role=membership.role,
            active=membership.user.is_active,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def principal_after(principal: Principal, change: AccessChange) -> Principal | None:
    """The principal once the change applies; None when it may no longer be connected."""
    if change.user_id != principal.user_id:
        return principal
    if change.revoked_key_id is not None:
        return None if change.revoked_key_id == principal.api_key_id else principal
    if change.ended_session is not None:
        ended = principal.session_key is not None and session_digest(principal.session_key) == change.ended_session
        return None if ended else principal
    if not change.active or change.tenant_id != principal.tenant_id:
        return None
    return replace(principal, role=change.role)


def session_digest(session_key: str) -> str:
    """A session key as it may travel between processes: the key itself would be a credential."""
    return hashlib.sha256(session_key.encode()).hexdigest()


def revalidate(principals: list[Principal]) -> list[Principal | None]:
    """Each principal as the database has it now (role updated), or None if revoked.

    Two queries for all, plus one a browser session (logged out, expired or password changed: None);
    a JWT's password stamp is checked too."""
    memberships = {
        m.user_id: m
        for m in Membership.objects.select_related("user").filter(
            user_id__in={p.user_id for p in principals}, user__is_active=True
        )
    }
    key_ids = {p.api_key_id for p in principals if p.api_key_id is not None}
    live_keys = set(ApiKey.objects.filter(pk__in=key_ids, revoked_at__isnull=True).values_list("pk", flat=True))
    current = []
    for principal in principals:
        membership = memberships.get(principal.user_id)
        if (
            membership is None
            or (principal.api_key_id is not None and principal.api_key_id not in live_keys)
            or (principal.session_key is not None and not _session_valid(principal.session_key, membership.user))
            or (principal.password_stamp is not None and principal.password_stamp != password_stamp(membership.user))
        ):
            current.append(None)
        else:
            current.append(principal_after(principal, AccessChange.of_membership(membership)))
    return current


def access_marks() -> tuple[int, int]:
    """How many access changes the database triggers marked, and the newest's id: it moves with every commit.

    The newest id alone would not: ids are taken when a change is made, not when it commits, so a
    change that commits after a later one would leave the newest id where it was.
    """
    marks = AccessChangeMark.objects.aggregate(count=Count("id"), newest=Max("id"))
    return marks["count"], marks["newest"] or 0


def prune_access_changes() -> int:
    """Delete the marks older than the newest (hourly): only how many there are and the newest are read."""
    return AccessChangeMark.objects.filter(id__lt=access_marks()[1]).delete()[0]


def _session_valid(session_key: str, user) -> bool:
    # load() answers {} for a session that is gone or expired.
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()
    return session_authenticates(data, user)


def reauthenticate(principal: Principal, token: str) -> Principal:
    """The principal of a fresh token for the same user and tenant (an in-band refresh), or raise InvalidToken."""
    fresh = principal_from_token(token)
    if (fresh.user_id, fresh.tenant_id) != (principal.user_id, principal.tenant_id):
        raise InvalidToken("The new token belongs to another user or tenant.")
    return fresh
