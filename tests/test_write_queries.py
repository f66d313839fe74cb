"""A REST write costs at most 5 queries once its token is known, and the token cache never outlives an access change."""

import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiKey, Membership, Role, Tenant
from accounts.services import api_key_revoke
from tests.support.auth import bearer, jwt_for
from tests.support.factories import api_key

pytestmark = pytest.mark.django_db(transaction=True)

MAX_QUERIES = 5
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def queries_of(action) -> tuple[object, list[str]]:
    """The action's result and the statements it ran, without transaction control."""
    with CaptureQueriesContext(connection) as captured:
        result = action()
    return result, [q["sql"] for q in captured if not q["sql"].upper().startswith(TRANSACTION_CONTROL)]


@pytest.mark.parametrize("credential", ["api key", "jwt"])
def test_create_update_and_delete_take_at_most_five_queries_each(make_user, credential):
    user = make_user()
    client = bearer(api_key(user) if credential == "api key" else jwt_for(user))
    assert client.get("/api/v4/memories/").status_code == 200  # the token is now known to this process
    response, created = queries_of(lambda: client.post("/api/v4/memories/", {"title": "a"}, format="json"))
    assert response.status_code == 201 and len(created) <= MAX_QUERIES, [q[:60] for q in created]
    url = f"/api/v4/memories/{response.json()['id']}/"
    response, updated = queries_of(lambda: client.patch(url, {"content": "b"}, format="json"))
    assert response.status_code == 200 and len(updated) <= MAX_QUERIES, updated
    response, deleted = queries_of(lambda: client.delete(url))
    assert response.status_code == 204 and len(deleted) <= MAX_QUERIES, deleted
    assert not any("accounts_" in sql for sql in created + updated + deleted)  # authentication came from the cache


def test_a_key_revoked_through_the_service_is_refused_at_once(make_user):
    user = make_user()
    client = bearer(api_key(user))
    assert client.get("/api/v4/memories/").status_code == 200
    api_key_revoke(api_key=ApiKey.objects.get(user=user))
    assert client.get("/api/v4/memories/").status_code == 401


@pytest.mark.parametrize(
    ("change", "credential"),
    [
        (lambda user: ApiKey.objects.filter(user=user).update(revoked_at="2026-01-01T00:00:00Z"), "api key"),
        (lambda user: get_user_model().objects.filter(pk=user.pk).update(is_active=False), "api key"),
        (lambda user: Membership.objects.filter(user=user).delete(), "api key"),
        (lambda user: Tenant.objects.filter(pk=user.membership.tenant_id).update(slug="renamed"), "jwt"),
    ],
    ids=["key revoked by update", "user deactivated by update", "membership deleted in bulk", "tenant renamed"],
)
def test_access_lost_without_a_signal_is_refused_within_the_check_interval(make_user, settings, change, credential):
    settings.PUOMEMO_AUTH_CACHE_CHECK_SECONDS = 0.2
    user = make_user()
    client = bearer(api_key(user) if credential == "api key" else jwt_for(user))  # a JWT names its tenant
    assert client.get("/api/v4/memories/").status_code == 200
    change(user)
    time.sleep(0.3)
    assert client.get("/api/v4/memories/").status_code == 401


def test_a_role_changed_without_a_signal_applies_within_the_check_interval(make_user, settings):
    settings.PUOMEMO_AUTH_CACHE_CHECK_SECONDS = 0.2
    user = make_user()
    client = bearer(api_key(user))
    assert client.post("/api/v4/memories/", {"title": "as a member"}, format="json").status_code == 201
    Membership.objects.filter(user=user).update(role=Role.GUEST)
    time.sleep(0.3)
    assert client.post("/api/v4/memories/", {"title": "as a guest"}, format="json").status_code == 403


def test_an_entry_lasts_no_longer_than_its_ttl(make_user, settings):
    settings.PUOMEMO_AUTH_CACHE_SECONDS = 0.2
    user = make_user()
    client = bearer(api_key(user))
    assert client.get("/api/v4/memories/").status_code == 200
    _, cached = queries_of(lambda: client.get("/api/v4/memories/"))
    time.sleep(0.3)
    _, expired = queries_of(lambda: client.get("/api/v4/memories/"))
    assert not any("accounts_apikey" in sql for sql in cached)
    assert any("accounts_apikey" in sql for sql in expired)
