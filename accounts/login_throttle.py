"""Failed password logins lock further tries, per (address, username) and per address, for a while.

Every password login (the web page, Django admin, POST /api/v4/auth/token/) goes through
`ThrottledModelBackend`, and the web page's current-password check through
`ThrottledPasswordChangeForm`; the counts are rows in the database, so every process shares them.
"""

import math
from datetime import datetime, timedelta
from ipaddress import IPv6Address, ip_address, ip_network

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import LoginFailure


class LoginThrottled(PermissionDenied):
    """Too many failed logins: none is tried for `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__("Too many failed logins.")
        self.retry_after = retry_after

    def as_validation_error(self) -> ValidationError:
        """The refusal, in minutes, for a form."""
        minutes = math.ceil(self.retry_after / 60)
        plural = "s" if minutes != 1 else ""
        return ValidationError(f"Too many failed logins. Try again in {minutes} minute{plural}.", code="throttled")


def _who(request: HttpRequest, username: str) -> tuple[str, str]:
    """The (address, username) a try is counted under."""
    # REMOTE_ADDR is the peer's, or with `serve --proxy-headers` the X-Forwarded-For address nginx sets.
    address = request.META.get("REMOTE_ADDR") or "unknown"
    try:
        if isinstance(ip_address(address), IPv6Address):
            address = str(ip_network(f"{address}/64", strict=False))  # one host usually has a whole /64
    except ValueError:
        pass
    return address[:64], username.casefold()[:150]


def _window() -> timedelta:
    return timedelta(seconds=settings.PUOMEMO_LOGIN_LOCKOUT_SECONDS)


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def _refuse_past_limits(address: str, username: str) -> None:
    """Raise LoginThrottled when this window's counts are past a limit."""
    now = timezone.now()
    rows = list(LoginFailure.objects.filter(address=address, first_at__gt=now - _window()).order_by("first_at"))
    mine = next((row for row in rows if row.username == username), None)
    if mine and mine.failures > settings.PUOMEMO_LOGIN_FAILURES_PER_USER:
        raise LoginThrottled(_seconds_until(mine.first_at + _window(), now))
    total = sum(row.failures for row in rows)
    if total > settings.PUOMEMO_LOGIN_FAILURES_PER_ADDRESS:
        # The lock lifts once enough of the oldest rows have aged out of the window.
        for row in rows:
            total -= row.failures
            if total <= settings.PUOMEMO_LOGIN_FAILURES_PER_ADDRESS:
                raise LoginThrottled(_seconds_until(row.first_at + _window(), now))


def count_login_attempt(request: HttpRequest, username: str) -> None:
    """Count this try as a failure before its password is checked; raise LoginThrottled past a limit.

    Counting first, in one atomic UPDATE, is what bounds parallel guesses: each gets its own number.
    A good password then forgives it (clear_login_failures); a refused try is taken back.
    """
    address, username = _who(request, username)
    now = timezone.now()
    LoginFailure.objects.filter(first_at__lte=now - _window()).delete()  # the expired, everyone's
    LoginFailure.objects.get_or_create(
        address=address, username=username, defaults={"failures": 0, "first_at": now, "last_at": now}
    )
    mine = LoginFailure.objects.filter(address=address, username=username)
    mine.update(failures=F("failures") + 1, last_at=now)
    try:
        _refuse_past_limits(address, username)
    except LoginThrottled:
        # Refused tries do not count: retrying a locked name must not lock the whole address.
        mine.update(failures=F("failures") - 1)
        raise


def clear_login_failures(request: HttpRequest, username: str) -> None:
    """A good password forgives this username's failures from this address."""
    address, username = _who(request, username)
    LoginFailure.objects.filter(address=address, username=username).delete()


def login_refusal(request: HttpRequest | None) -> LoginThrottled | None:
    """The refusal behind a failed authenticate(), if it was one (authenticate() returns None for both)."""
    return getattr(request, "login_throttled", None)


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend, counting every password try and refusing those past a limit."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        # Without a request (tests, shells) or credentials there is nothing to count; ModelBackend decides.
        if request is None or not username or password is None:
            return super().authenticate(request, username=username, password=password, **kwargs)
        try:
            count_login_attempt(request, username)
        except LoginThrottled as throttled:
            # authenticate() stops at once (a right password during a lockout does not log in) and turns the
            # refusal into "no user": left on the request, so the form or serializer can say why.
            request.login_throttled = throttled
            raise
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            clear_login_failures(request, username)
        return user


class ThrottledAuthenticationForm(AuthenticationForm):
    """The login form, saying so when a login was refused for too many failures instead of 'wrong password'."""

    def clean(self):
        try:
            return super().clean()
        except ValidationError:
            if throttled := login_refusal(self.request):
                raise throttled.as_validation_error() from None
            raise

    @property
    def throttled(self) -> bool:
        return self.has_error(NON_FIELD_ERRORS, "throttled")


class ThrottledPasswordChangeForm(PasswordChangeForm):
    """Django's password change form; a wrong current password counts as a failed login."""

    def __init__(self, user, *args, request: HttpRequest, **kwargs):
        super().__init__(user, *args, **kwargs)
        self.request = request

    def clean_old_password(self) -> str:
        username = self.user.get_username()
        try:
            count_login_attempt(self.request, username)
        except LoginThrottled as throttled:
            raise throttled.as_validation_error() from None
        old_password = super().clean_old_password()
        clear_login_failures(self.request, username)
        return old_password
