"""The web UI's views through Django's test client: roles, forms over the services, conflicts, CSRF, JSON helpers."""

import json
import re

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.staticfiles import finders
from django.test import Client

from accounts.access import revalidate
from accounts.models import Role
from accounts.principal import InvalidToken, principal_of_session
from memories.models import Memory, Visibility
from memories.search import Hit
from memories.selectors import memory_list
from memories.services import memory_update
from realtime.models import Event
from realtime.routing import same_origin
from tests.support.factories import PASSWORD, MemoryFactory, UserFactory, principal


@pytest.fixture
def browser_for():
    """A Django test client logged in as the user (CSRF checks on, as for a real browser)."""

    def login(user) -> Client:
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)
        return client

    return login


def csrf(client: Client) -> str:
    """The CSRF token a page gave the client (the home page sets the cookie)."""
    client.get("/")
    return client.cookies["csrftoken"].value


def boot(response) -> dict:
    return json.loads(re.search(r'<script id="boot" type="application/json">(.*?)</script>', response.text).group(1))


def test_pages_need_a_login(db):
    for path in ["/", "/search/", "/snapshot.json", "/ws/test-client/"]:
        response = Client().get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")


def test_the_icon_is_served_to_pages_and_to_browsers_that_ask_for_favicon_ico(db):
    response = Client().get("/favicon.ico")
    assert (response.status_code, response["Location"]) == (302, "/static/web/icon.svg")
    assert finders.find("web/icon.svg") is not None
    assert 'href="/static/web/icon.svg"' in Client().get("/login/").content.decode()


def test_login_with_the_form_then_logout_by_post_only(make_user):
    user = make_user(Role.MEMBER)
    client = Client()
    page = client.get("/login/")
    assert page.status_code == 200 and "demo-password" not in page.text  # the demo hint is for DEBUG only
    response = client.post("/login/", {"username": user.username, "password": "wrong"})
    assert response.status_code == 200 and "did not match" in response.text
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.get("/logout/").status_code == 405  # a link cannot log anyone out
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_the_list_shows_what_the_viewer_may_see_with_the_snapshot_seq(make_user, browser_for):
    admin, member, guest = make_user(Role.ADMIN), make_user(Role.MEMBER), make_user(Role.GUEST)
    team = MemoryFactory(owner=member, title="Team plan", visibility=Visibility.TEAM)
    public = MemoryFactory(owner=member, title="Open day", visibility=Visibility.PUBLIC)
    private = MemoryFactory(owner=member, title="My diary", visibility=Visibility.PRIVATE)
    admins = MemoryFactory(owner=admin, title="Admin notes", visibility=Visibility.TEAM)
    seq = Event.objects.filter(tenant=member.membership.tenant).count()

    page = browser_for(guest).get("/")
    state = boot(page)
    assert [m["title"] for m in state["memories"]] == ["Open day"]
    assert state["seq"] == seq and state["writable"] is False
    assert "Team plan" not in page.text and 'id="create-form"' not in page.text
    assert "/edit/" not in page.text.split('<template id="memory-actions">')[0]  # no write controls

    state = boot(browser_for(member).get("/"))
    editable = {m["title"]: m["can_edit"] for m in state["memories"]}
    assert editable == {"Admin notes": False, "My diary": True, "Open day": True, "Team plan": True}

    page = browser_for(admin).get("/")
    editable = {m["title"]: m["can_edit"] for m in boot(page)["memories"]}
    assert editable == {"Admin notes": True, "Open day": True, "Team plan": True}  # others' non-private only
    assert f"/memories/{team.pk}/edit/" in page.text and f"/memories/{public.pk}/edit/" in page.text
    assert str(private.pk) not in page.text and str(admins.pk) in page.text
    assert "/ws/test-client/" in page.text  # admins get the link; members do not
    assert "/ws/test-client/" not in browser_for(member).get("/").text


def test_the_password_page_is_linked_in_the_header_and_needs_a_login(make_user, browser_for):
    client = browser_for(make_user(Role.MEMBER))
    assert 'href="/password/"' in client.get("/").text
    page = client.get("/password/")
    assert page.status_code == 200
    assert 'name="old_password"' in page.text and 'name="new_password1"' in page.text
    assert 'href="/password/"' not in Client().get("/login/").text  # not for anonymous users
    response = Client().get("/password/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/password/"


def test_a_refused_password_change_shows_why_next_to_the_field_and_changes_nothing(make_user):
    user = make_user(Role.MEMBER)
    client = Client()
    client.force_login(user)
    session_key = client.session.session_key
    for data, field, message in [
        ({"old_password": PASSWORD, "new_password1": "12345", "new_password2": "12345"}, "new_password2", "too short"),
        (
            {"old_password": PASSWORD, "new_password1": "a good new one 1", "new_password2": "a good new one 2"},
            "new_password2",
            "password fields didn",
        ),
        (
            {"old_password": "wrong", "new_password1": "a good new one 1", "new_password2": "a good new one 1"},
            "old_password",
            "incorrectly",
        ),
    ]:
        response = client.post("/password/", data)
        assert response.status_code == 200
        # The message follows its own field's input, before the next field's label.
        after_field = response.text.split(f'name="{field}"', 1)[1].split("<label", 1)[0]
        assert message in after_field
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert client.session.session_key == session_key and client.get("/").status_code == 200


def test_a_password_change_keeps_this_browser_logged_in_with_a_new_session(make_user):
    user = make_user(Role.MEMBER)
    client, other = Client(), Client()
    client.force_login(user)
    other.force_login(user)
    session_key = client.session.session_key
    new = "a brand new password 42"
    response = client.post("/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert response.status_code == 302 and response["Location"] == "/password/done/"
    user.refresh_from_db()
    assert user.check_password(new)
    assert client.session.session_key != session_key  # rotated: sockets of the old key close at the re-check
    assert not SessionStore().exists(session_key)
    done = client.get(response["Location"])
    assert done.status_code == 200 and done.wsgi_request.user == user and "Password changed" in done.text
    assert client.get("/").status_code == 200
    assert client.get("/api/v4/events", {"after_seq": 0, "limit": 1}).status_code == 200  # what app.js asks
    assert other.get("/").status_code == 302  # the user's other sessions are logged out
    assert other.get("/api/v4/events", {"after_seq": 0, "limit": 1}).status_code in (401, 403)


def test_creating_through_the_form_uses_the_service_and_its_rules(make_user, browser_for):
    member = make_user(Role.MEMBER)
    client = browser_for(member)
    token = csrf(client)
    response = client.post(
        "/memories/new/",
        {"title": "Ship it", "content": "Friday", "tags": " Release, release ,team", "visibility": "public"},
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 302
    memory = Memory.objects.get(title="Ship it")
    assert (memory.owner, memory.tags, memory.visibility) == (member, ["release", "team"], "public")
    event = Event.objects.get(memory_id=memory.pk)  # the same write path as REST: one logged event
    assert (event.type, event.data["user_name"]) == ("memory.created", principal(member).user_name)

    # The serializer's rules, not a copy: a title or content, at most 20 tags, tags of at most 50 characters.
    for data, field in [
        ({"title": " ", "content": "", "visibility": "team"}, "A memory needs a title or content."),
        ({"title": "x", "tags": ",".join(f"t{i}" for i in range(21)), "visibility": "team"}, "no more than 20"),
        ({"title": "x", "tags": "a" * 51, "visibility": "team"}, "no more than 50 characters"),
        ({"title": "x", "visibility": "secret"}, "Select a valid choice"),
    ]:
        response = client.post("/memories/new/", data, HTTP_X_CSRFTOKEN=token)
        assert response.status_code == 400
        assert field in response.text
    assert Memory.objects.count() == 1


def test_guests_cannot_write_and_members_cannot_change_others(make_user, browser_for):
    guest, member, other = make_user(Role.GUEST), make_user(Role.MEMBER), make_user(Role.MEMBER)
    theirs = MemoryFactory(owner=other, visibility=Visibility.TEAM)
    client = browser_for(guest)
    assert (
        client.post("/memories/new/", {"title": "x", "visibility": "public"}, HTTP_X_CSRFTOKEN=csrf(client)).status_code
        == 403
    )
    client = browser_for(member)
    token = csrf(client)
    assert client.get(f"/memories/{theirs.pk}/edit/").status_code == 403
    response = client.post(f"/memories/{theirs.pk}/delete/", {"expected_version": 1}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 403
    secret = MemoryFactory(owner=other, visibility=Visibility.PRIVATE)
    assert client.get(f"/memories/{secret.pk}/edit/").status_code == 404
    assert Memory.objects.filter(pk__in=[theirs.pk, secret.pk]).count() == 2


def test_csrf_is_enforced(make_user, browser_for):
    client = browser_for(make_user(Role.MEMBER))
    assert client.post("/memories/new/", {"title": "x", "visibility": "team"}).status_code == 403
    assert not Memory.objects.exists()


def test_an_edit_against_an_old_version_shows_who_changed_it_and_overwrites_nothing(make_user, browser_for):
    admin, owner = make_user(Role.ADMIN, first_name="Ada", last_name="Admin"), make_user(Role.MEMBER)
    memory = MemoryFactory(owner=owner, title="Plan A", content="first", visibility=Visibility.TEAM)
    client = browser_for(owner)
    token = csrf(client)
    form = client.get(f"/memories/{memory.pk}/edit/")
    assert 'name="expected_version" value="1"' in form.text
    memory_update(editor=principal(admin), memory=memory, data={"title": "Plan B"})  # someone else, meanwhile

    response = client.post(
        f"/memories/{memory.pk}/edit/",
        {"title": "Plan C", "content": "mine", "tags": "", "visibility": "team", "expected_version": 1},
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 409
    assert "Changed by Ada Admin meanwhile" in response.text
    assert 'value="Plan B"' in response.text and 'name="expected_version" value="2"' in response.text
    assert "Plan C" in response.text  # what they typed is kept on the page
    memory.refresh_from_db()
    assert (memory.title, memory.content, memory.version) == ("Plan B", "first", 2)

    response = client.post(
        f"/memories/{memory.pk}/edit/",
        {"title": "Plan C", "content": "mine", "tags": "x", "visibility": "team", "expected_version": 2},
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 302
    memory.refresh_from_db()
    assert (memory.title, memory.tags, memory.version) == ("Plan C", ["x"], 3)


def test_a_delete_against_an_old_version_is_refused_then_done(make_user, browser_for):
    owner = make_user(Role.MEMBER, first_name="Bo", last_name="")
    memory = MemoryFactory(owner=owner, title="Old", visibility=Visibility.TEAM)
    memory_update(editor=principal(owner), memory=memory, data={"title": "New"})
    client = browser_for(owner)
    token = csrf(client)
    response = client.post(f"/memories/{memory.pk}/delete/", {"expected_version": 1}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 409 and "Changed by Bo meanwhile" in response.text and "New" in response.text
    assert Memory.objects.filter(pk=memory.pk).exists()
    response = client.post(f"/memories/{memory.pk}/delete/", {"expected_version": "x"}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 400
    response = client.post(f"/memories/{memory.pk}/delete/", {"expected_version": 2}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 302 and not Memory.objects.filter(pk=memory.pk).exists()
    response = client.post(f"/memories/{memory.pk}/delete/", {"expected_version": 2}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 404


def test_snapshot_and_meta_json(make_user, browser_for, other_tenant):
    admin, member = make_user(Role.ADMIN), make_user(Role.MEMBER)
    mine = MemoryFactory(owner=member, visibility=Visibility.TEAM)
    theirs_private = MemoryFactory(owner=admin, visibility=Visibility.PRIVATE)
    foreign = MemoryFactory(owner=UserFactory(membership__tenant=other_tenant), visibility=Visibility.PUBLIC)
    client = browser_for(member)
    state = client.get("/snapshot.json").json()
    assert [m["id"] for m in state["memories"]] == [str(mine.pk)] and state["seq"] == 2
    meta = client.get("/memories/meta.json", {"id": [mine.pk, theirs_private.pk, foreign.pk]}).json()
    assert list(meta) == [str(mine.pk)]
    assert meta[str(mine.pk)]["owner"] == {"id": member.pk, "username": member.username}
    assert meta[str(mine.pk)]["can_edit"] is True and meta[str(mine.pk)]["matches"] is True
    assert client.get("/memories/meta.json", {"id": "nope"}).status_code == 400
    # With the list's filters: whether each memory matches them, by the same selector as REST.
    meta = client.get("/memories/meta.json", {"id": [mine.pk], "tag": "other"}).json()
    assert meta[str(mine.pk)]["matches"] is False
    response = client.get("/memories/meta.json", {"id": [mine.pk], "visibility": "secret"})
    assert response.status_code == 400 and "visibility" in response.json()


def test_the_list_filters_by_tag_owner_visibility_and_text_as_rest_does(make_user, browser_for):
    member, other = make_user(Role.MEMBER), make_user(Role.MEMBER)
    a = MemoryFactory(owner=member, title="Alpha plan", tags=["plans", "q3"], visibility=Visibility.TEAM)
    b = MemoryFactory(owner=other, title="Beta", tags=["plans"], visibility=Visibility.PUBLIC)
    MemoryFactory(owner=other, title="Gamma secret", tags=["plans"], visibility=Visibility.PRIVATE)  # never shown
    client = browser_for(member)

    def listed(**params) -> list[str]:
        response = client.get("/", params)
        assert response.status_code == 200
        return [m["title"] for m in boot(response)["memories"]]

    assert listed(tag="PLANS") == ["Beta", "Alpha plan"]
    assert listed(tag="plans", owner=other.username) == ["Beta"]
    assert listed(visibility="team") == ["Alpha plan"]
    assert listed(q="alpha") == ["Alpha plan"]
    assert listed(q="", tag="") == ["Beta", "Alpha plan"]  # empty fields are no filter
    response = client.get("/", {"tag": "q3"})
    assert boot(response)["filters"] == {"tag": "q3"} and 'value="q3"' in response.text
    assert 'href="?tag=q3"' in response.text and f'href="?owner={member.username}"' in response.text
    response = client.get("/", {"visibility": "secret"})
    assert response.status_code == 400 and "not a valid choice" in response.text
    assert [m["id"] for m in boot(response)["memories"]] == [str(b.pk), str(a.pk)]  # unfiltered meanwhile
    # REST has the owner filter too.
    assert memory_list_titles(member, owner=other.username) == ["Beta"]


def memory_list_titles(user, **filters) -> list[str]:
    return [m.title for m in memory_list(viewer=principal(user), filters=filters)]


def test_older_pages_follow_a_stable_cursor(make_user, browser_for, monkeypatch):
    monkeypatch.setattr("web.views.LIST_LIMIT", 3)
    member = make_user(Role.MEMBER)
    made = [MemoryFactory(owner=member, title=f"m{i}") for i in range(7)]
    # Two share a created_at: the id orders them, as the server's ordering does.
    Memory.objects.filter(pk=made[4].pk).update(created_at=made[3].created_at)
    client = browser_for(member)
    first = boot(client.get("/"))
    assert first["more"] is True and len(first["memories"]) == 3
    seen, page = [m["id"] for m in first["memories"]], first
    while page["more"]:
        last = page["memories"][-1]
        page = client.get("/snapshot.json", {"before": last["created_at"], "before_id": last["id"]}).json()
        seen += [m["id"] for m in page["memories"]]
    expected = [str(m.pk) for m in Memory.objects.order_by("-created_at", "-id")]
    assert seen == expected and len(seen) == 7
    # Oldest first: the same memories the other way round, the cursor going forwards.
    page = boot(client.get("/", {"sort": "oldest"}))
    seen = [m["id"] for m in page["memories"]]
    while page["more"]:
        last = page["memories"][-1]
        params = {"sort": "oldest", "before": last["created_at"], "before_id": last["id"]}
        page = client.get("/snapshot.json", params).json()
        seen += [m["id"] for m in page["memories"]]
    assert seen == expected[::-1]
    assert client.get("/", {"sort": "sideways"}).status_code == 400
    response = client.get("/snapshot.json", {"before": "yesterday", "before_id": "x"})
    assert response.status_code == 400 and set(response.json()) == {"before", "before_id"}
    assert client.get("/snapshot.json", {"before_id": made[0].pk}).status_code == 400


def test_markdown_is_rendered_and_sanitised(make_user, browser_for):
    member = make_user(Role.MEMBER)
    content = "# Plan\n\n**bold** [link](https://example.com) [bad](javascript:alert(1))\n\n<script>alert(1)</script>"
    content += '<img src=x onerror="alert(2)"><b onclick="x()">b</b>'
    MemoryFactory(owner=member, content=content)
    html = boot(browser_for(member).get("/"))["memories"][0]["html"]
    assert "<strong>bold</strong>" in html and "<h1>Plan</h1>" in html
    assert 'href="https://example.com"' in html and "noopener" in html
    for bad in ("<script", "javascript:", "onerror", "onclick", "<img"):
        assert bad not in html


def test_a_form_reached_again_after_logging_in_is_never_a_405(make_user, browser_for):
    member = make_user(Role.MEMBER)
    client = browser_for(member)
    response = client.get("/memories/new/")
    assert response.status_code == 302 and response["Location"] == "/#new-heading"
    response = Client().post("/memories/new/", {"title": "x"})  # the session ended: to the login page
    assert response.status_code == 302 and response["Location"] == "/login/?next=/memories/new/"


def test_a_saved_form_names_its_draft_so_the_page_drops_it(make_user, browser_for):
    member = make_user(Role.MEMBER)
    client = browser_for(member)
    token = csrf(client)
    response = client.post("/memories/new/", {"title": "x", "visibility": "team"}, HTTP_X_CSRFTOKEN=token, follow=True)
    assert 'data-saved-draft="new"' in response.text
    memory = Memory.objects.get(title="x")
    data = {"title": "y", "visibility": "team", "expected_version": 1}
    response = client.post(f"/memories/{memory.pk}/edit/", data, HTTP_X_CSRFTOKEN=token, follow=True)
    assert f'data-saved-draft="edit:{memory.pk}"' in response.text


def test_a_memory_not_yours_to_see_is_the_pages_own_404_under_debug_too(make_user, browser_for, settings):
    settings.DEBUG = True
    owner, guest = make_user(Role.MEMBER), make_user(Role.GUEST)
    memory = MemoryFactory(owner=owner, visibility=Visibility.TEAM)
    response = browser_for(guest).get(f"/memories/{memory.pk}/edit/")
    assert response.status_code == 404 and "<h1>Not found</h1>" in response.text
    assert "URLconf" not in response.text  # not Django's debug page


def test_a_delete_from_the_pages_fetch_answers_json(make_user, browser_for):
    owner = make_user(Role.MEMBER)
    memory = MemoryFactory(owner=owner)
    client = browser_for(owner)
    token = csrf(client)
    json_post = {"HTTP_X_CSRFTOKEN": token, "HTTP_ACCEPT": "application/json"}
    memory_update(editor=principal(owner), memory=memory, data={"title": "New"})
    response = client.post(f"/memories/{memory.pk}/delete/", {"expected_version": 1}, **json_post)
    assert response.status_code == 409 and response.json()["memory"]["title"] == "New"
    assert client.post(f"/memories/{memory.pk}/delete/", {"expected_version": "x"}, **json_post).status_code == 400
    response = client.post(f"/memories/{memory.pk}/delete/", {"expected_version": 2}, **json_post)
    assert response.status_code == 204
    response = client.post(f"/memories/{memory.pk}/delete/", {"expected_version": 2}, **json_post)
    assert response.status_code == 404


def test_the_rest_api_takes_the_session_with_csrf_on_writes(make_user, browser_for):
    member = make_user(Role.MEMBER)
    MemoryFactory(owner=member, visibility=Visibility.TEAM)
    client = browser_for(member)
    response = client.get("/api/v4/events", {"after_seq": 0}, HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and [e["type"] for e in response.json()["events"]] == ["memory.created"]
    response = client.post("/api/v4/memories/", {"title": "x"}, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    response = client.post(
        "/api/v4/memories/", {"title": "x"}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf(client)
    )
    assert response.status_code == 201


def test_a_user_in_no_tenant_gets_a_clear_page(db):
    operator = UserFactory(membership=None, is_staff=True)
    client = Client()
    client.force_login(operator)
    response = client.get("/")
    assert response.status_code == 403 and "belongs to no team" in response.text
    assert client.get("/api/v4/events", {"after_seq": 0}).status_code == 401


def test_the_test_client_page_is_for_admins(make_user, browser_for):
    page = browser_for(make_user(Role.ADMIN)).get("/ws/test-client/")
    assert page.status_code == 200 and 'id="tc-log"' in page.text and "test-client.js" in page.text
    assert browser_for(make_user(Role.MEMBER)).get("/ws/test-client/").status_code == 403


def test_search_uses_the_search_selector(make_user, browser_for, monkeypatch):
    member = make_user(Role.MEMBER)
    MemoryFactory(owner=member, title="Puppy training", visibility=Visibility.TEAM)
    asked = []

    def fake_search(*, viewer, q, limit):
        asked.append((viewer.user_id, q, limit))
        return [Hit(memory=Memory.objects.get(), score=0.5, match="semantic", similarity=0.5)]

    monkeypatch.setattr("web.views.memory_search", fake_search)
    page = browser_for(member).get("/search/", {"q": "dogs"})
    assert asked == [(member.pk, "dogs", 20)] and "Puppy training" in page.text and "similar in meaning" in page.text
    assert "0.5" not in page.text  # no raw scores


def test_a_session_principal_lasts_as_long_as_the_session(make_user):
    user = make_user(Role.MEMBER)
    client = Client()
    client.force_login(user)
    session = SessionStore(client.session.session_key)
    found = principal_of_session(session)
    assert (found.user_id, found.session_key) == (user.pk, session.session_key)
    assert revalidate([found]) == [found]

    user.set_password("a new one 123")  # another device changed the password: this session is void
    user.save()
    assert revalidate([found]) == [None]
    with pytest.raises(InvalidToken):
        principal_of_session(SessionStore(session.session_key))

    client.force_login(user)
    again = principal_of_session(SessionStore(client.session.session_key))
    client.logout()  # the session is gone
    assert revalidate([again]) == [None]
    with pytest.raises(InvalidToken):
        principal_of_session(SessionStore(again.session_key))
    anonymous = SessionStore()
    anonymous["other"] = 1
    anonymous.save()
    assert SESSION_KEY not in anonymous.load()
    with pytest.raises(InvalidToken):
        principal_of_session(anonymous)


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("https://memo.example.com", "memo.example.com", True),
        ("https://memo.example.com", "memo.example.com:443", True),
        ("http://memo.example.com", "memo.example.com:80", True),
        ("HTTP://Memo.Example.com", "memo.example.com", True),
        ("http://127.0.0.1:8001", "127.0.0.1:8000", False),  # same site, another origin
        ("http://memo.example.com.evil.test", "memo.example.com", False),
        ("null", "memo.example.com", False),
        ("", "memo.example.com", False),
        ("https://app.example.com", "api.example.com", True),  # trusted in settings below
    ],
)
def test_only_a_same_origin_page_gets_its_session_on_the_socket(settings, origin, host, same):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com"]
    scope = {"headers": [(b"origin", origin.encode()), (b"host", host.encode())]}
    assert same_origin(scope) is same
