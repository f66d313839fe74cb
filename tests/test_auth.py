"""Tokens, API keys and the 401 cases."""

from datetime import timedelta

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import ApiKey, hash_api_key
from tests.support.auth import bearer, jwt_for
from tests.support.factories import PASSWORD, TenantFactory, api_key

pytestmark = pytest.mark.django_db

MEMORIES = "/api/v4/memories/"


def test_login_returns_tokens_carrying_the_tenant(make_user, tenant):
    user = make_user()
    response = APIClient().post("/api/v4/auth/token/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 200
    tokens = response.json()
    assert AccessToken(tokens["access"])["tenant"] == tenant.slug
    assert bearer(tokens["access"]).get(MEMORIES).status_code == 200
    refreshed = APIClient().post("/api/v4/auth/token/refresh/", {"refresh": tokens["refresh"]})
    assert refreshed.status_code == 200
    assert AccessToken(refreshed.json()["access"])["tenant"] == tenant.slug


def test_login_with_a_wrong_password_is_401(make_user):
    user = make_user()
    response = APIClient().post("/api/v4/auth/token/", {"username": user.username, "password": "nope"})
    assert response.status_code == 401


def test_api_key_lifecycle(make_user):
    user = make_user()
    client = bearer(jwt_for(user))
    created = client.post("/api/v4/api-keys/", {"name": "laptop"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "name", "prefix", "created_at", "key"}
    key = body["key"]
    assert key.startswith("pm_") and body["prefix"] == key[:12]
    stored = ApiKey.objects.get(pk=body["id"])
    assert stored.key_hash == hash_api_key(key) and key not in str(stored.__dict__)

    listed = client.get("/api/v4/api-keys/").json()
    assert [k["id"] for k in listed] == [body["id"]]
    assert "key" not in listed[0]

    assert bearer(key).get(MEMORIES).status_code == 200
    stored.refresh_from_db()
    assert stored.last_used_at is not None

    assert client.delete(f"/api/v4/api-keys/{body['id']}/").status_code == 204
    response = bearer(key).get(MEMORIES)
    assert response.status_code == 401
    assert "detail" in response.json()


def test_cannot_revoke_someone_elses_key(make_user):
    owner, other = make_user(), make_user()
    key = ApiKey.objects.get(key_hash=hash_api_key(api_key(owner)))
    assert bearer(jwt_for(other)).delete(f"/api/v4/api-keys/{key.pk}/").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def test_expired_jwt_is_401(make_user):
    token = AccessToken.for_user(make_user())
    token.set_exp(lifetime=-timedelta(seconds=1))
    assert bearer(str(token)).get(MEMORIES).status_code == 401


def test_forged_jwt_is_401(make_user):
    header, payload, _ = jwt_for(make_user()).split(".")
    assert bearer(f"{header}.{payload}.forged").get(MEMORIES).status_code == 401


def test_inactive_user_is_401_with_jwt_and_api_key(make_user):
    user = make_user()
    token, key = jwt_for(user), api_key(user)
    user.is_active = False
    user.save()
    assert bearer(token).get(MEMORIES).status_code == 401
    assert bearer(key).get(MEMORIES).status_code == 401


def test_jwt_of_a_former_tenant_is_401(make_user):
    user = make_user()
    token = jwt_for(user)
    user.membership.tenant = TenantFactory()
    user.membership.save()
    assert bearer(token).get(MEMORIES).status_code == 401


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Bearer pm_unknown", "Bearer a b", "Token abc", "Bearer \xff", "\xff abc"]
)
def test_missing_or_bad_credentials_are_401(db, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(MEMORIES)
    assert response.status_code == 401
    assert "codec" not in response.json()["detail"]  # says what is wrong, not Python's exception


def test_user_without_tenant_cannot_log_in(db):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("loner", password=PASSWORD)
    response = APIClient().post("/api/v4/auth/token/", {"username": "loner", "password": PASSWORD})
    assert response.status_code == 401


def test_a_password_change_voids_the_jwts_issued_before_but_not_api_keys(make_user):
    user = make_user()
    tokens = APIClient().post("/api/v4/auth/token/", {"username": user.username, "password": PASSWORD}).json()
    key = api_key(user)
    user.set_password("a new password 2")
    user.save()
    assert bearer(tokens["access"]).get(MEMORIES).status_code == 401
    refreshed = APIClient().post("/api/v4/auth/token/refresh/", {"refresh": tokens["refresh"]})
    assert refreshed.status_code == 401 and "password changed" in refreshed.json()["detail"]
    assert bearer(key).get(MEMORIES).status_code == 200  # a separate credential: revoked on its own
    fresh = APIClient().post("/api/v4/auth/token/", {"username": user.username, "password": "a new password 2"})
    assert bearer(fresh.json()["access"]).get(MEMORIES).status_code == 200


def test_a_jwt_without_a_password_stamp_is_401(make_user):
    user = make_user()
    token = AccessToken.for_user(user)
    token["tenant"] = user.membership.tenant.slug
    assert bearer(str(token)).get(MEMORIES).status_code == 401


def test_refreshing_for_a_deleted_user_is_401_not_500(make_user):
    user = make_user()
    tokens = APIClient().post("/api/v4/auth/token/", {"username": user.username, "password": PASSWORD}).json()
    user.delete()
    assert APIClient().post("/api/v4/auth/token/refresh/", {"refresh": tokens["refresh"]}).status_code == 401
