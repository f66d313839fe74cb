"""Failed password logins lock further tries, per (address, username) and per address, for a while.

Every password login (the web page, Django admin, POST /api/v4/auth/token/) goes through
`ThrottledModelBackend`; the counts are rows in the database, so every process shares them.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db.models import F, Min, Sum
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import LoginFailure


class LoginThrottled(PermissionDenied):
    """Too many failed logins: none is tried for `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"Too many failed logins. Try again in {retry_after} seconds.")
        self.retry_after = retry_after


def _who(request: HttpRequest, username: str) -> tuple[str, str]:
    # Behind nginx, REMOTE_ADDR is the client's own address (daphne runs with --proxy-headers).
    return request.META.get("REMOTE_ADDR") or "unknown", username.casefold()[:150]


def _window() -> timedelta:
    return timedelta(seconds=settings.PUOMEMO_LOGIN_LOCKOUT_SECONDS)


def check_login_allowed(request: HttpRequest, username: str) -> None:
    """Raise LoginThrottled if this address, or this username from it, failed too often in the window."""
    address, username = _who(request, username)
    now = timezone.now()
    recent = LoginFailure.objects.filter(address=address, first_at__gt=now - _window())
    mine = recent.filter(username=username).first()
    if mine and mine.failures >= settings.PUOMEMO_LOGIN_FAILURES_PER_USER:
        raise LoginThrottled(_seconds_until(mine.first_at + _window(), now))
    totals = recent.aggregate(failures=Sum("failures"), oldest=Min("first_at"))
    if (totals["failures"] or 0) >= settings.PUOMEMO_LOGIN_FAILURES_PER_ADDRESS:
        raise LoginThrottled(_seconds_until(totals["oldest"] + _window(), now))


def _seconds_until(moment, now) -> int:
    return max(1, int((moment - now).total_seconds()) + 1)


def record_login_failure(request: HttpRequest, username: str) -> None:
    """Count one failed login; a row older than the window starts over."""
    address, username = _who(request, username)
    now = timezone.now()
    LoginFailure.objects.filter(first_at__lte=now - _window()).delete()  # the expired, everyone's
    counted = LoginFailure.objects.filter(address=address, username=username).update(
        failures=F("failures") + 1, last_at=now
    )
    if not counted:
        LoginFailure.objects.get_or_create(
            address=address, username=username, defaults={"failures": 1, "first_at": now, "last_at": now}
        )


def clear_login_failures(request: HttpRequest, username: str) -> None:
    """A good password forgives this username's failures from this address."""
    address, username = _who(request, username)
    LoginFailure.objects.filter(address=address, username=username).delete()


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend, refusing throttled logins and counting the failed ones."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None or not username or password is None:  # not a login over HTTP
            return super().authenticate(request, username=username, password=password, **kwargs)
        # Raised here, authenticate() stops at once: a right password during a lockout does not log in.
        check_login_allowed(request, username)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            record_login_failure(request, username)
        else:
            clear_login_failures(request, username)
        return user


class ThrottledAuthenticationForm(AuthenticationForm):
    """The login form, saying so when logins are throttled instead of 'wrong password'."""

    def clean(self):
        username = self.cleaned_data.get("username")
        if username and self.request is not None:
            try:
                check_login_allowed(self.request, username)
            except LoginThrottled as throttled:
                minutes = -(-throttled.retry_after // 60)
                raise ValidationError(
                    f"Too many failed logins. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                    code="throttled",
                ) from None
        return super().clean()

    @property
    def throttled(self) -> bool:
        return self.has_error(NON_FIELD_ERRORS, "throttled")
