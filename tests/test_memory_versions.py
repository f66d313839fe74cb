"""Memory versions: what bumps them, ETags, and If-Match / expected_version turning lost updates into 412s."""

import threading

import pytest
from django.db import connections
from django.db.models.signals import pre_save

from accounts.models import Role
from memories.embedding_service import embed_due_memories
from memories.models import EmbeddingStatus, Memory
from memories.services import VersionConflict, memory_update
from tests.support.factories import MemoryFactory, principal

pytestmark = pytest.mark.django_db

URL = "/api/v4/memories/"


def reloaded(memory: Memory) -> Memory:
    return Memory.objects.get(pk=memory.pk)


def test_version_starts_at_one_and_grows_by_one_per_client_visible_change(make_user):
    alice, bob = make_user(), make_user()
    memory = MemoryFactory(owner=alice, title="One", tags=["a"], visibility="team")
    assert (memory.version, reloaded(memory).version) == (1, 1)

    steps = [
        ("title", "Two"),
        ("content", "new text"),
        ("tags", ["a", "b"]),
        ("visibility", "public"),
        ("owner", bob),  # who may see it changed: news to clients too
    ]
    for expected, (field, value) in enumerate(steps, start=2):
        memory = reloaded(memory)
        setattr(memory, field, value)
        memory.save()
        assert (memory.version, reloaded(memory).version) == (expected, expected), field

    memory.title = "Three"
    memory.save(update_fields=["title"])
    assert reloaded(memory).version == 7


def test_saves_that_change_nothing_a_client_sees_keep_the_version(make_user):
    memory = MemoryFactory(owner=make_user(), title="Same")
    memory.save()  # on the instance that was just created
    memory = reloaded(memory)
    memory.save()  # on a freshly loaded instance
    memory.title = "Same"
    memory.save()  # setting a field to what it was
    memory.embedding_error = "a note for the worker"
    memory.save()  # a change to the embedding state only
    assert reloaded(memory).version == 1

    embed_due_memories()  # the worker stores with QuerySet.update(), not save()
    stored = reloaded(memory)
    assert (stored.embedding_status, stored.version) == (EmbeddingStatus.READY, 1)


def test_responses_of_one_memory_carry_version_and_etag(make_user, client_for):
    client = client_for(make_user())
    created = client.post(URL, {"title": "Plan"}, format="json")
    assert created.status_code == 201
    assert (created.json()["version"], created["ETag"]) == (1, '"1"')
    url = f"{URL}{created.json()['id']}/"

    got = client.get(url)
    assert (got.json()["version"], got["ETag"]) == (1, '"1"')
    patched = client.patch(url, {"title": "Plan B"}, format="json")
    assert (patched.status_code, patched.json()["version"], patched["ETag"]) == (200, 2, '"2"')
    put = client.put(url, {"title": "Plan C"}, format="json")
    assert (put.status_code, put.json()["version"], put["ETag"]) == (200, 3, '"3"')
    same = client.patch(url, {"title": "Plan C"}, format="json")
    assert (same.json()["version"], same["ETag"]) == (3, '"3"')
    assert client.get(URL).json()["results"][0]["version"] == 3


@pytest.fixture
def two_editors(make_user, client_for):
    """A team memory that its owner (a member) and an admin may both edit, each with their own client."""
    alice, admin = make_user(Role.MEMBER), make_user(Role.ADMIN)
    memory = MemoryFactory(owner=alice, title="Original", content="Text", visibility="team")
    return memory, client_for(alice), client_for(admin), f"{URL}{memory.id}/"


@pytest.mark.parametrize("method", ["patch", "put"])
@pytest.mark.parametrize("how", ["if-match", "expected_version"])
def test_the_second_of_two_editors_of_one_version_gets_412_with_the_current_memory(two_editors, method, how):
    memory, first, second, url = two_editors
    assert first.get(url)["ETag"] == second.get(url)["ETag"] == '"1"'

    def edit(client, title):
        body = {"title": title, "content": "Text"}
        if how == "if-match":
            return getattr(client, method)(url, body, format="json", HTTP_IF_MATCH='"1"')
        return getattr(client, method)(url, {**body, "expected_version": 1}, format="json")

    won = edit(first, "First editor's")
    assert (won.status_code, won.json()["version"], won.json()["title"]) == (200, 2, "First editor's")
    assert "expected_version" not in won.json()

    lost = edit(second, "Second editor's")
    assert lost.status_code == 412
    assert lost["ETag"] == '"2"'
    body = lost.json()
    assert set(body) == {"detail", "memory"}
    assert (body["memory"]["id"], body["memory"]["version"], body["memory"]["title"]) == (
        str(memory.id),
        2,
        "First editor's",
    )
    stored = reloaded(memory)
    assert (stored.title, stored.version) == ("First editor's", 2)

    retried = getattr(second, method)(
        url, {"title": "Second editor's", "content": "Text"}, format="json", HTTP_IF_MATCH=lost["ETag"]
    )
    assert (retried.status_code, retried.json()["version"], retried.json()["title"]) == (200, 3, "Second editor's")


def test_delete_with_a_stale_if_match_is_412_and_deletes_nothing(two_editors):
    memory, first, second, url = two_editors
    first.patch(url, {"title": "Edited"}, format="json", HTTP_IF_MATCH='"1"')
    stale = second.delete(url, HTTP_IF_MATCH='"1"')
    assert stale.status_code == 412
    assert (stale.json()["memory"]["version"], stale.json()["memory"]["title"]) == (2, "Edited")
    assert Memory.objects.filter(pk=memory.pk).exists()
    assert second.delete(url, HTTP_IF_MATCH='"2"').status_code == 204
    assert not Memory.objects.filter(pk=memory.pk).exists()


def test_without_a_version_the_last_write_wins_as_before(two_editors):
    memory, first, second, url = two_editors
    assert first.patch(url, {"title": "First"}, format="json").json()["version"] == 2
    assert second.patch(url, {"title": "Second"}, format="json").json()["version"] == 3
    stored = reloaded(memory)
    assert (stored.title, stored.version) == ("Second", 3)
    assert second.delete(url).status_code == 204


@pytest.mark.parametrize("header", ['"1"', 'W/"1"', "1", " 1 ", "*"])
def test_if_match_forms_that_are_accepted(two_editors, header):
    _, first, _, url = two_editors
    response = first.patch(url, {"title": "Edited"}, format="json", HTTP_IF_MATCH=header)
    assert (response.status_code, response.json()["version"]) == (200, 2)


@pytest.mark.parametrize("header", ["abc", '"v1"', '"1", "2"', '"0"', '"-1"', "", '"1.5"'])
def test_a_bad_if_match_is_400_json_and_writes_nothing(two_editors, header):
    memory, first, _, url = two_editors
    for response in (
        first.patch(url, {"title": "Edited"}, format="json", HTTP_IF_MATCH=header),
        first.put(url, {"title": "Edited"}, format="json", HTTP_IF_MATCH=header),
        first.delete(url, HTTP_IF_MATCH=header),
    ):
        assert response.status_code == 400
        assert "If-Match" in response.json()["detail"]
    stored = reloaded(memory)
    assert (stored.title, stored.version) == ("Original", 1)


def test_if_match_and_expected_version_must_agree(two_editors):
    memory, first, _, url = two_editors
    response = first.patch(url, {"title": "Edited", "expected_version": 2}, format="json", HTTP_IF_MATCH='"1"')
    assert response.status_code == 400
    assert "detail" in response.json()
    bad = first.patch(url, {"title": "Edited", "expected_version": "one"}, format="json")
    assert (bad.status_code, set(bad.json())) == (400, {"expected_version"})
    assert reloaded(memory).version == 1


def test_expected_version_is_not_stored_and_ignored_on_create(make_user, client_for):
    response = client_for(make_user()).post(URL, {"title": "New", "expected_version": 7}, format="json")
    assert (response.status_code, response.json()["version"]) == (201, 1)
    assert "expected_version" not in response.json()


def test_permission_is_checked_before_the_version(make_user, client_for):
    memory = MemoryFactory(owner=make_user(), visibility="public")
    guest = client_for(make_user(Role.GUEST))
    response = guest.patch(f"{URL}{memory.id}/", {"title": "x"}, format="json", HTTP_IF_MATCH='"9"')
    assert response.status_code == 403
    assert guest.delete(f"{URL}{memory.id}/", HTTP_IF_MATCH='"9"').status_code == 403


def test_the_service_checks_and_bumps_from_the_stored_row_not_the_callers_copy(two_editors):
    memory, *_ = two_editors
    owner = principal(memory.owner)
    stale = reloaded(memory)
    memory_update(editor=owner, memory=reloaded(memory), data={"title": "Meanwhile"})
    with pytest.raises(VersionConflict) as conflict:
        memory_update(editor=owner, memory=stale, data={"title": "Lost"}, expected_version=stale.version)
    assert (conflict.value.current.version, conflict.value.current.title) == (2, "Meanwhile")
    # Without a check the write happens, and the version still grows from the stored one.
    saved = memory_update(editor=owner, memory=stale, data={"title": "Last"})
    assert (saved.version, reloaded(memory).version, reloaded(memory).title) == (3, 3, "Last")


@pytest.mark.django_db(transaction=True)
def test_concurrent_editors_of_one_version_cannot_both_write(make_user):
    """Two threads, each on its own connection, both write against version 1: exactly one wins."""
    alice, admin = make_user(Role.MEMBER), make_user(Role.ADMIN)
    memory = MemoryFactory(owner=alice, title="Original", visibility="team")
    editors = {"alice": principal(alice), "admin": principal(admin)}
    start = threading.Barrier(len(editors))
    outcomes: dict[str, str] = {}

    def slow_save(sender, instance, **kwargs):
        # Widen the window between reading the row and writing it.
        threading.Event().wait(0.2)

    def edit(name: str) -> None:
        try:
            start.wait()
            memory_update(editor=editors[name], memory=memory, data={"title": name}, expected_version=1)
            outcomes[name] = "saved"
        except VersionConflict as conflict:
            outcomes[name] = f"conflict at {conflict.current.version}"
        except Exception as error:  # reported by the assertion below
            outcomes[name] = repr(error)
        finally:
            connections.close_all()

    pre_save.connect(slow_save, sender=Memory, dispatch_uid="test.slow_save")
    try:
        threads = [threading.Thread(target=edit, args=(name,)) for name in editors]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        pre_save.disconnect(sender=Memory, dispatch_uid="test.slow_save")

    assert sorted(outcomes.values()) == ["conflict at 2", "saved"], outcomes
    [winner] = [name for name, outcome in outcomes.items() if outcome == "saved"]
    stored = reloaded(memory)
    assert (stored.title, stored.version) == (winner, 2)


def test_openapi_documents_if_match_412_and_expected_version(client):
    text = client.get("/api/v4/schema/").content.decode()
    for needle in ("If-Match", "'412':", "expected_version", "ETag", "MemoryConflict"):
        assert needle in text, needle
