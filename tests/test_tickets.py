"""Single-use /ws tickets: POST /api/v4/ws/ticket, then principal_from_ticket (Redis when REDIS_URL is set)."""

import hashlib
import json
import threading
import time
from dataclasses import replace

import pytest
from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError
from rest_framework.test import APIClient

from accounts.models import ApiKey, Role
from accounts.principal import InvalidToken, password_stamp
from accounts.services import api_key_revoke
from realtime import ticket_store
from realtime.node import node
from realtime.tickets import TICKET_PREFIX, principal_from_ticket, ticket_issue, ticket_redeem
from tests.support.auth import bearer
from tests.support.clock import Clock
from tests.support.factories import api_key, principal
from tests.support.live import free_port
from tests.support.logs import assert_one_line

URL = "/api/v4/ws/ticket"


def issue(client: APIClient) -> str:
    response = client.post(URL)
    assert response.status_code == 201, response.content
    return response.json()["ticket"]


def test_a_ticket_from_rest_opens_once_as_its_user_and_tenant(make_user, client_for):
    user = make_user()
    response = client_for(user).post(URL)
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"ticket", "expires_in"}
    assert body["ticket"].startswith(TICKET_PREFIX)
    assert body["expires_in"] == settings.PUOMEMO_WS_TICKET_TTL_SECONDS == 30
    assert response["Cache-Control"] == "no-store"

    redeemed = principal_from_ticket(body["ticket"])
    # The socket may live as long as the JWT that asked for the ticket, no longer.
    assert redeemed.expires_at is not None and redeemed.expires_at > timezone.now()
    assert redeemed.password_stamp == password_stamp(user)  # and no longer than its password
    assert replace(redeemed, expires_at=None, password_stamp=None) == principal(user)
    with pytest.raises(InvalidToken):
        principal_from_ticket(body["ticket"])


def test_a_session_cannot_buy_a_ticket(make_user):
    # A socket opened with it would outlive the session (logout, password change): tickets are for bearer tokens.
    client = APIClient()
    client.force_login(make_user())
    assert client.post(URL).status_code == 401


def test_a_jwts_ticket_is_void_once_the_password_changed(make_user, client_for):
    user = make_user()
    ticket = issue(client_for(user))
    user.set_password("a new password 2")
    user.save()
    with pytest.raises(InvalidToken):
        principal_from_ticket(ticket)


def test_each_ticket_is_new(make_user, client_for):
    client = client_for(make_user())
    assert issue(client) != issue(client)


def test_guests_get_tickets_too(make_user, client_for):
    guest = make_user(Role.GUEST)
    assert principal_from_ticket(issue(client_for(guest))).role == Role.GUEST


def test_a_ticket_works_once_when_redeemed_at_the_same_time(make_user):
    ticket, _ = ticket_issue(principal=principal(make_user()))
    start = threading.Barrier(8)
    grants = []

    def redeem():
        start.wait()
        grants.append(ticket_redeem(ticket))

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(grant is not None for grant in grants) == 1


@pytest.fixture
def wait(monkeypatch):
    """Let `seconds` pass for the ticket store: on its injected clock in memory; on Redis, whose keys expire on the
    server's own clock, really."""
    clock = Clock()
    monkeypatch.setattr(ticket_store, "time", clock)
    return time.sleep if settings.REDIS_URL else clock.advance


def test_a_late_ticket_is_refused(make_user, client_for, settings, wait):
    settings.PUOMEMO_WS_TICKET_TTL_SECONDS = 1
    response = client_for(make_user()).post(URL)
    assert response.json()["expires_in"] == 1
    wait(1.5)
    with pytest.raises(InvalidToken):
        principal_from_ticket(response.json()["ticket"])


def test_an_expired_ticket_leaves_the_store(make_user, settings, wait):
    settings.PUOMEMO_WS_TICKET_TTL_SECONDS = 1
    ticket_issue(principal=principal(make_user()))
    wait(1.5)
    settings.PUOMEMO_WS_TICKET_TTL_SECONDS = 30
    ticket_issue(principal=principal(make_user()))
    store = node().tickets
    if settings.REDIS_URL:
        assert len(list(store.client.scan_iter("puomemo:ws:ticket:*"))) == 1
    else:
        assert len(store.entries) == 1


@pytest.mark.parametrize(
    "forged",
    [
        "",
        "wst_",
        TICKET_PREFIX + "A" * 43,
        "pm_" + "A" * 43,
        TICKET_PREFIX + "A" * 10_000,
    ],
    ids=["empty", "prefix-only", "unknown", "api-key-shaped", "huge"],
)
def test_a_forged_or_unknown_ticket_is_refused(make_user, forged):
    ticket_issue(principal=principal(make_user()))
    with pytest.raises(InvalidToken):
        principal_from_ticket(forged)


def test_a_ticket_stored_under_its_digest_is_not_the_ticket(make_user):
    # Knowing the stored digest (a dump of Redis) is not knowing the ticket.
    ticket, _ = ticket_issue(principal=principal(make_user()))
    with pytest.raises(InvalidToken):
        principal_from_ticket(hashlib.sha256(ticket.encode()).hexdigest())
    assert principal_from_ticket(ticket)


def test_the_ticket_is_stored_only_as_its_sha256(make_user):
    user = make_user()
    ticket, _ = ticket_issue(principal=principal(user))
    digest = hashlib.sha256(ticket.encode()).hexdigest()
    secret = ticket.removeprefix(TICKET_PREFIX)
    store = node().tickets
    if settings.REDIS_URL:
        keys = list(store.client.scan_iter("puomemo:*"))
        assert f"puomemo:ws:ticket:{digest}".encode() in keys
        stored = b"".join(keys) + b"".join(store.client.get(key) or b"" for key in keys if b":ticket:" in key)
        assert json.loads(store.client.get(f"puomemo:ws:ticket:{digest}")) == {
            "user_id": user.pk,
            "tenant_id": user.membership.tenant_id,
            "expires_at": None,
            "api_key_id": None,
            "password_stamp": None,
        }
        assert 0 < store.client.ttl(f"puomemo:ws:ticket:{digest}") <= 30
    else:
        assert set(store.entries) == {digest}
        stored = repr(store.entries).encode()
    assert secret.encode() not in stored


def test_a_ticket_of_a_user_deactivated_after_issue_is_refused(make_user, client_for):
    user = make_user()
    ticket = issue(client_for(user))
    user.is_active = False
    user.save()
    with pytest.raises(InvalidToken):
        principal_from_ticket(ticket)


def test_a_ticket_of_a_user_moved_to_another_tenant_is_refused(make_user, client_for, other_tenant):
    user = make_user()
    ticket = issue(client_for(user))
    user.membership.tenant = other_tenant
    user.membership.save()
    with pytest.raises(InvalidToken):
        principal_from_ticket(ticket)


def test_a_ticket_carries_the_role_the_user_has_when_it_is_used(make_user, client_for):
    user = make_user(Role.ADMIN)
    ticket = issue(client_for(user))
    user.membership.role = Role.GUEST
    user.membership.save()
    assert principal_from_ticket(ticket).role == Role.GUEST


def test_a_ticket_from_an_api_key_keeps_the_key(make_user):
    user = make_user()
    ticket = issue(bearer(api_key(user)))
    key = ApiKey.objects.get(user=user)
    assert principal_from_ticket(ticket).api_key_id == key.pk


def test_a_ticket_from_an_api_key_revoked_after_issue_is_refused(make_user):
    user = make_user()
    ticket = issue(bearer(api_key(user)))
    api_key_revoke(api_key=ApiKey.objects.get(user=user))
    with pytest.raises(InvalidToken):
        principal_from_ticket(ticket)


def test_unauthenticated_requests_get_no_ticket(make_user):
    assert APIClient().post(URL).status_code == 401
    assert bearer("wst_" + "A" * 43).post(URL).status_code == 401
    assert bearer("not-a-token").post(URL).status_code == 401


def test_only_post_issues_tickets(make_user, client_for):
    assert client_for(make_user()).get(URL).status_code == 405


def test_the_openapi_schema_documents_the_ticket_endpoint(client):
    text = client.get("/api/v4/schema/").content.decode()
    assert "/api/v4/ws/ticket" in text
    assert "WebSocketTicket" in text


def test_while_redis_is_down_tickets_are_503_and_redeeming_is_not_a_refusal(make_user, client_for, settings, caplog):
    ticket, _ = ticket_issue(principal=principal(make_user()))
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client_for(make_user()).post(URL)
    assert response.status_code == 503
    assert "Redis" in response.json()["detail"]
    assert_one_line(caplog, "Storing a WebSocket ticket in Redis failed")
    # Not InvalidToken: the client should retry (the consumer closes with 1013), not fetch a new token.
    with pytest.raises(RedisError):
        principal_from_ticket(ticket)
