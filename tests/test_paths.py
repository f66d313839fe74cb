"""Every REST path answers with and without its trailing slash, for every method; the schema lists one form."""

import uuid

import pytest
from django.urls import resolve
from rest_framework.test import APIClient

from accounts.models import ApiKey, Role
from memories.models import Memory
from puomemo.paths import OTHER_FORM
from tests.support.factories import PASSWORD, MemoryFactory, api_key

pytestmark = pytest.mark.django_db

API = "/api/v4/"

# The form each path is listed in by the OpenAPI schema, as drf-spectacular spells it.
CANONICAL = {
    "/api/v4/auth/token/",
    "/api/v4/auth/token/refresh/",
    "/api/v4/api-keys/",
    "/api/v4/api-keys/{id}/",
    "/api/v4/memories/",
    "/api/v4/memories/search",
    "/api/v4/memories/trash/",
    "/api/v4/memories/{id}/",
    "/api/v4/memories/{id}/restore/",
    "/api/v4/ws/status",
    "/api/v4/events",
    "/api/v4/ws/ticket",
}


def other_form(path: str) -> str:
    """The path with its trailing slash toggled."""
    return path.removesuffix("/") if path.endswith("/") else f"{path}/"


@pytest.fixture(params=["canonical", "other"])
def form(request):
    """Each test runs once with the paths as the schema lists them and once with the slash toggled."""
    return (lambda path: path) if request.param == "canonical" else other_form


def test_auth_token_and_refresh(make_user, form):
    user = make_user()
    tokens = APIClient().post(form(f"{API}auth/token/"), {"username": user.username, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.content
    refreshed = APIClient().post(form(f"{API}auth/token/refresh/"), {"refresh": tokens.json()["refresh"]})
    assert refreshed.status_code == 200 and "access" in refreshed.json()


def test_api_keys_list_create_and_revoke(make_user, client_for, form):
    client = client_for(make_user())
    assert client.get(form(f"{API}api-keys/")).status_code == 200
    created = client.post(form(f"{API}api-keys/"), {"name": "ci"}, format="json")
    assert created.status_code == 201
    key_id = created.json()["id"]
    assert client.delete(form(f"{API}api-keys/{key_id}/")).status_code == 204
    assert ApiKey.objects.get(pk=key_id).revoked_at is not None


def test_memories_list_create_and_each_method_on_one(make_user, client_for, form):
    user = make_user(Role.MEMBER)
    client = client_for(user)
    assert client.get(form(f"{API}memories/")).status_code == 200
    created = client.post(form(f"{API}memories/"), {"title": "Plan", "content": "Ship"}, format="json")
    assert created.status_code == 201
    one = form(f"{API}memories/{created.json()['id']}/")
    assert client.get(one).json()["title"] == "Plan"
    assert client.put(one, {"title": "Plan B", "content": "Ship"}, format="json").status_code == 200
    assert client.patch(one, {"title": "Plan C"}, format="json").json()["title"] == "Plan C"
    assert client.delete(one).status_code == 204
    assert not Memory.objects.filter(pk=created.json()["id"]).exists()


def test_search_is_never_read_as_a_memory_id(make_user, client_for, form):
    client = client_for(make_user())
    MemoryFactory(owner=make_user())
    response = client.get(form(f"{API}memories/search"))
    assert response.status_code == 400  # the search view's own answer: q is required
    assert "q" in response.json()


def test_ws_status_events_and_ticket(make_user, form):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key(make_user())}")
    assert client.get(form(f"{API}ws/status")).status_code == 200
    events = client.get(form(f"{API}events"), {"after_seq": 0})
    assert events.status_code == 200 and "events" in events.json()
    assert client.post(form(f"{API}ws/ticket")).status_code == 201


def test_schema_and_swagger_ui(client, form):
    assert client.get(form(f"{API}schema/")).status_code == 200
    assert client.get(form(f"{API}docs/")).status_code == 200


def test_every_api_route_has_both_forms():
    from puomemo.urls import api_v4

    routes = {str(pattern.pattern): pattern.name for pattern in api_v4}
    for route, name in routes.items():
        assert other_form(route) in routes, route
        assert name.endswith(OTHER_FORM) != routes[other_form(route)].endswith(OTHER_FORM)
        example = other_form(route).replace("<int:pk>", "1").replace("<uuid:pk>", str(uuid.UUID(int=0)))
        match = resolve(API + example)
        assert match.url_name.removesuffix(OTHER_FORM) == name.removesuffix(OTHER_FORM)


def test_the_schema_lists_one_form_of_each_path(client):
    paths = set(client.get(f"{API}schema/", {"format": "json"}).json()["paths"])
    assert paths == CANONICAL
