"""Bearer tokens seen lately, so that a REST request costs no query to authenticate while nobody's access changed.

An entry lasts PUOMEMO_AUTH_CACHE_SECONDS at most. Every access change empties the cache:
at once for changes made in this process through the ORM (signals), and for any other
(another process, QuerySet.update(), raw SQL) once the database triggers' newest mark
moves, which is read at most every PUOMEMO_AUTH_CACHE_CHECK_SECONDS.
"""

import hashlib
import threading
import time

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from accounts.access import access_marks
from accounts.models import ApiKey, Membership, Tenant
from accounts.principal import Principal, authenticate_token


class AuthCache:
    """Token digest -> (user, principal) for this process."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, AbstractBaseUser, Principal]] = {}
        self.lock = threading.Lock()
        self.mark: tuple[int, int] | None = None
        self.mark_read_at = float("-inf")

    def authenticate(self, token: str) -> tuple[AbstractBaseUser, Principal]:
        """The token's user and principal, from the cache or the database; raises InvalidToken."""
        ttl = settings.PUOMEMO_AUTH_CACHE_SECONDS
        digest, now = hashlib.sha256(token.encode()).hexdigest(), time.monotonic()
        self._follow_access_changes(now)
        cached = self.entries.get(digest)
        if cached is not None and cached[0] > now and _unexpired(cached[2]):
            return cached[1], cached[2]
        user, principal = authenticate_token(token)
        with self.lock:
            if len(self.entries) >= settings.PUOMEMO_AUTH_CACHE_MAX_ENTRIES:
                self.entries.clear()  # rare, and cheaper than tracking which entry is oldest
            self.entries[digest] = (now + ttl, user, principal)
        return user, principal

    def clear(self) -> None:
        """Forget every entry (an access change)."""
        with self.lock:
            self.entries.clear()

    def _follow_access_changes(self, now: float) -> None:
        if now - self.mark_read_at < settings.PUOMEMO_AUTH_CACHE_CHECK_SECONDS:
            return
        with self.lock:
            if now - self.mark_read_at < settings.PUOMEMO_AUTH_CACHE_CHECK_SECONDS:
                return  # another thread just read it
            mark = access_marks()
            if mark != self.mark:
                self.entries.clear()
                self.mark = mark
            self.mark_read_at = now


def _unexpired(principal: Principal) -> bool:
    return principal.expires_at is None or principal.expires_at > timezone.now()


auth_cache = AuthCache()


@receiver(post_save, sender=Membership, dispatch_uid="accounts.auth_cache.membership_saved")
@receiver(post_delete, sender=Membership, dispatch_uid="accounts.auth_cache.membership_deleted")
@receiver(post_save, sender=ApiKey, dispatch_uid="accounts.auth_cache.api_key_saved")
@receiver(post_delete, sender=ApiKey, dispatch_uid="accounts.auth_cache.api_key_deleted")
@receiver(post_save, sender=Tenant, dispatch_uid="accounts.auth_cache.tenant_saved")
@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.auth_cache.user_saved")
@receiver(post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.auth_cache.user_deleted")
def access_may_have_changed(sender, **kwargs) -> None:
    auth_cache.clear()
