"""Failed password logins lock further tries, per (address, username) and per address, for a while.

Every password login (the web page, Django admin, POST /api/v4/auth/token/) goes through
`ThrottledModelBackend`, and the web page's current-password check through
`ThrottledPasswordChangeForm`; the counts are rows in the database, so every process shares them.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Min, Sum
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import LoginFailure


class LoginThrottled(PermissionDenied):
    """Too many failed logins: none is tried for `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"Too many failed logins. Try again in {retry_after} seconds.")
        self.retry_after = retry_after

    def as_validation_error(self) -> ValidationError:
        """The same, in minutes, for a form."""
        minutes = -(-self.retry_after // 60)
        plural = "s" if minutes != 1 else ""
        return ValidationError(f"Too many failed logins. Try again in {minutes} minute{plural}.", code="throttled")


def _who(request: HttpRequest, username: str) -> tuple[str, str]:
    # REMOTE_ADDR is the peer's, or with `serve --proxy-headers` the X-Forwarded-For address nginx sets.
    address = (request.META.get("REMOTE_ADDR") or "unknown")[: LoginFailure._meta.get_field("address").max_length]
    return address, username.casefold()[: LoginFailure._meta.get_field("username").max_length]


def _window() -> timedelta:
    return timedelta(seconds=settings.PUOMEMO_LOGIN_LOCKOUT_SECONDS)


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds()) + 1)


def _refuse_past_limits(address: str, username: str) -> None:
    """Raise LoginThrottled when this window's counts are past a limit."""
    now = timezone.now()
    recent = LoginFailure.objects.filter(address=address, first_at__gt=now - _window())
    mine = recent.filter(username=username).first()
    if mine and mine.failures > settings.PUOMEMO_LOGIN_FAILURES_PER_USER:
        raise LoginThrottled(_seconds_until(mine.first_at + _window(), now))
    totals = recent.aggregate(failures=Sum("failures"), oldest=Min("first_at"))
    if (totals["failures"] or 0) > settings.PUOMEMO_LOGIN_FAILURES_PER_ADDRESS:
        raise LoginThrottled(_seconds_until(totals["oldest"] + _window(), now))


def count_login_attempt(request: HttpRequest, username: str) -> None:
    """Count this try as a failure before its password is checked; raise LoginThrottled past a limit.

    Counting first, in one atomic UPDATE, is what bounds parallel guesses: each gets its own number.
    A good password then forgives it (clear_login_failures).
    """
    address, username = _who(request, username)
    now = timezone.now()
    LoginFailure.objects.filter(first_at__lte=now - _window()).delete()  # the expired, everyone's
    if not LoginFailure.objects.filter(address=address, username=username).update(
        failures=F("failures") + 1, last_at=now
    ):
        try:
            with transaction.atomic():
                LoginFailure.objects.create(address=address, username=username, failures=1, first_at=now, last_at=now)
        except IntegrityError:  # a parallel try made the row first
            LoginFailure.objects.filter(address=address, username=username).update(
                failures=F("failures") + 1, last_at=now
            )
    _refuse_past_limits(address, username)


def clear_login_failures(request: HttpRequest, username: str) -> None:
    """A good password forgives this username's failures from this address."""
    address, username = _who(request, username)
    LoginFailure.objects.filter(address=address, username=username).delete()


def refused_login(request: HttpRequest | None) -> LoginThrottled | None:
    """The refusal behind a failed authenticate(), if it was one (authenticate() returns None for both)."""
    return getattr(request, "login_throttled", None)


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend, counting every password try and refusing those past a limit."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None or not username or password is None:  # not a login over HTTP
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
            if throttled := refused_login(self.request):
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
