"""Failed password logins lock further tries: the token endpoint, the web login and Django admin alike."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import login_throttle
from accounts.models import LoginFailure, Role
from tests.support.clock import Clock
from tests.support.factories import PASSWORD

pytestmark = pytest.mark.django_db

TOKEN = "/api/v4/auth/token/"


@pytest.fixture(autouse=True)
def limits(settings):
    settings.PUOMEMO_LOGIN_FAILURES_PER_USER = 3
    settings.PUOMEMO_LOGIN_FAILURES_PER_ADDRESS = 7
    settings.PUOMEMO_LOGIN_LOCKOUT_SECONDS = 900
    return settings


def token_login(username: str, password: str, address: str = "10.0.0.1"):
    return APIClient().post(TOKEN, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_the_token_endpoint_locks_a_username_after_its_failures_from_one_address(make_user):
    user = make_user()
    for _ in range(3):
        assert token_login(user.username, "guess").status_code == 401
    refused = token_login(user.username, PASSWORD)  # the right password too, while locked
    assert refused.status_code == 429
    assert 890 <= int(refused["Retry-After"]) <= 901
    assert "Retry-After" not in token_login(user.username, PASSWORD, address="10.0.0.2")  # another address: 200
    assert token_login(user.username.upper(), PASSWORD).status_code == 429  # one username, however typed
    other = make_user()
    assert token_login(other.username, PASSWORD).status_code == 200  # another user from the same address


def test_a_good_password_forgives_earlier_failures(make_user):
    user = make_user()
    for _ in range(2):
        assert token_login(user.username, "guess").status_code == 401
    assert token_login(user.username, PASSWORD).status_code == 200
    for _ in range(2):
        assert token_login(user.username, "guess").status_code == 401
    assert token_login(user.username, PASSWORD).status_code == 200


def test_an_address_guessing_many_usernames_is_locked_for_all_of_them(make_user):
    user = make_user()
    for n in range(7):
        assert token_login(f"nobody-{n}", "guess").status_code == 401
    assert token_login(user.username, PASSWORD).status_code == 429
    assert token_login(user.username, PASSWORD, address="10.0.0.2").status_code == 200


def test_the_lock_lifts_when_the_window_has_passed(make_user, limits, monkeypatch):
    clock = Clock()  # the throttle's timezone.now(): the 15 minutes pass without waiting
    monkeypatch.setattr(login_throttle, "timezone", clock)
    user = make_user()
    for _ in range(3):
        token_login(user.username, "guess")
    assert token_login(user.username, PASSWORD).status_code == 429
    clock.advance(limits.PUOMEMO_LOGIN_LOCKOUT_SECONDS - 1)
    assert token_login(user.username, PASSWORD).status_code == 429  # not yet
    clock.advance(1.1)
    assert token_login(user.username, PASSWORD).status_code == 200
    token_login("someone-else", "guess")  # a later failure sweeps the expired rows
    assert list(LoginFailure.objects.values_list("username", flat=True)) == ["someone-else"]


def test_the_web_login_says_so_and_does_not_log_in(make_user):
    user = make_user(Role.MEMBER)
    client = Client(REMOTE_ADDR="10.0.0.3")
    for _ in range(3):
        response = client.post("/login/", {"username": user.username, "password": "guess"})
        assert "did not match" in response.text
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 200
    assert "Too many failed logins. Try again in 15 minutes." in response.text
    assert client.get("/").status_code == 302  # still not logged in


def test_admin_login_is_throttled_and_an_admin_lifts_the_lock(make_user):
    staff = make_user(Role.ADMIN, is_staff=True, is_superuser=True)
    client = Client(REMOTE_ADDR="10.0.0.4")
    for _ in range(3):
        client.post("/admin/login/", {"username": staff.username, "password": "guess"})
    response = client.post("/admin/login/", {"username": staff.username, "password": PASSWORD})
    assert "Too many failed logins" in response.text

    rescuer = Client()
    rescuer.force_login(make_user(Role.ADMIN, is_staff=True, is_superuser=True))
    listing = rescuer.get("/admin/accounts/loginfailure/")
    assert listing.status_code == 200 and staff.username in listing.text and "10.0.0.4" in listing.text
    row = LoginFailure.objects.get()
    assert rescuer.get(f"/admin/accounts/loginfailure/{row.pk}/change/").status_code == 200  # view only
    assert rescuer.post(f"/admin/accounts/loginfailure/{row.pk}/delete/", {"post": "yes"}).status_code == 302
    response = client.post("/admin/login/", {"username": staff.username, "password": PASSWORD})
    assert response.status_code == 302  # logged in


def test_logins_without_a_request_are_not_counted(make_user):
    user = make_user()
    assert not Client().login(username=user.username, password="guess")  # tests, shells, scripts
    assert not LoginFailure.objects.exists()


def test_an_address_too_long_for_the_column_is_cut_not_a_500(make_user):
    user = make_user()
    for _ in range(3):
        assert token_login(user.username, "guess", address="b" * 80).status_code == 401
    assert token_login(user.username, PASSWORD, address="b" * 80).status_code == 429


def test_a_wrong_current_password_on_the_password_page_counts_as_a_failed_login(make_user):
    user = make_user(Role.MEMBER)
    client = Client(REMOTE_ADDR="10.0.0.5")
    client.force_login(user)
    change = {"new_password1": "a good new one 1", "new_password2": "a good new one 1"}
    for _ in range(3):
        response = client.post("/password/", {"old_password": "guess", **change})
        assert "incorrectly" in response.text
    response = client.post("/password/", {"old_password": PASSWORD, **change})
    assert response.status_code == 200 and "Too many failed logins. Try again in 15 minutes." in response.text
    user.refresh_from_db()
    assert user.check_password(PASSWORD)  # unchanged
    assert token_login(user.username, PASSWORD, address="10.0.0.5").status_code == 429  # one count for both


def test_a_right_current_password_forgives_earlier_failures(make_user):
    user = make_user(Role.MEMBER)
    client = Client(REMOTE_ADDR="10.0.0.6")
    client.force_login(user)
    client.post("/password/", {"old_password": "guess", "new_password1": "x", "new_password2": "x"})
    change = {"old_password": PASSWORD, "new_password1": "a good new one 1", "new_password2": "a good new one 1"}
    assert client.post("/password/", change).status_code == 302
    assert not LoginFailure.objects.exists()


def test_refused_tries_do_not_count_towards_the_address(make_user):
    locked, other = make_user(), make_user()
    for _ in range(3):
        token_login(locked.username, "guess")
    for _ in range(10):  # a script retrying a locked name
        assert token_login(locked.username, PASSWORD).status_code == 429
    assert LoginFailure.objects.get().failures == 3
    assert token_login(other.username, PASSWORD).status_code == 200  # 3 of the address's 7, not 13


def test_one_ipv6_host_is_one_address_however_it_rotates_within_its_64(make_user):
    user = make_user()
    for n in range(3):
        assert token_login(user.username, "guess", address=f"2001:db8::{n + 1}").status_code == 401
    assert token_login(user.username, PASSWORD, address="2001:db8::ffff").status_code == 429
    assert token_login(user.username, PASSWORD, address="2001:db8:0:1::1").status_code == 200  # another /64


def test_the_address_lock_lifts_when_enough_of_its_oldest_failures_have_aged_out(make_user, limits):
    limits.PUOMEMO_LOGIN_FAILURES_PER_ADDRESS = 4
    now = timezone.now()
    for n, minutes_ago in enumerate([14, 10, 5]):  # 3 + 3 + 3 failures in the 15-minute window
        at = now - timedelta(minutes=minutes_ago)
        LoginFailure.objects.create(address="10.0.0.7", username=f"u{n}", failures=3, first_at=at, last_at=at)
    refused = token_login(make_user().username, PASSWORD, address="10.0.0.7")
    # With this try, 10. The oldest row ages out in 1 minute (7 left, still past 4); the next in 5 (4 left).
    assert refused.status_code == 429 and 295 <= int(refused["Retry-After"]) <= 301


def test_staff_change_their_password_on_the_throttled_page(make_user):
    client = Client()
    client.force_login(make_user(Role.ADMIN, is_staff=True))
    response = client.get("/admin/password_change/")
    assert response.status_code == 302 and response["Location"] == "/password/"
