"""The list page in Chromium against a real server: older pages, filters with live events, times and authorship,
live cues, Undo, phones, drafts across a re-login, Markdown, accessibility (axe-core) and the keyboard."""

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import PHONE, log_in, logged_in
from tests.support.live import api, manage

pytestmark = pytest.mark.browser

# dee has a tenant of her own: the paging test counts every memory she may see.
USERS = {
    "ann": ("crew", "admin"),
    "max": ("crew", "member"),
    "gus": ("crew", "guest"),
    "dee": ("deep", "member"),
}
LIVE = 2000  # ms: the bound for a change to show in another browser
PAGE = 50  # memories a page of the list holds (web/views.py LIST_LIMIT)
AXE = Path(__file__).parent / "data" / "axe" / "axe.min.js"


@pytest.fixture(scope="module")
def cluster(cluster_factory):
    return cluster_factory("browser-ui", users=USERS, count=1)


@pytest.fixture
def login(cluster, browser):
    """Log a user in, in a browser context of their own, closed when the test ends (passed or not)."""
    pages = []

    def open_page(username: str, **options) -> Page:
        page = logged_in(browser, cluster.servers[0], username, **options)
        pages.append(page)
        return page

    yield open_page
    for page in pages:
        page.context.close()


def titles(page: Page):
    return page.locator("#memories .memory-title")


def card(page: Page, memory: dict):
    return page.locator(f"#memory-{memory['id']}")


def create(cluster, user: str, **fields) -> dict:
    status, memory = api(cluster.servers[0], "POST", "/api/v4/memories/", cluster.keys[user], fields)
    assert status == 201, memory
    return memory


def patch(cluster, user: str, memory: dict, **fields) -> dict:
    status, changed = api(cluster.servers[0], "PATCH", f"/api/v4/memories/{memory['id']}/", cluster.keys[user], fields)
    assert status == 200, changed
    return changed


def test_older_memories_load_by_cursor_and_events_keep_the_order(cluster, login):
    server = cluster.servers[0]
    script = (
        "import json; from accounts.models import Membership; from accounts.principal import Principal; "
        "from memories.services import memory_create; "
        "author = Principal.from_membership(Membership.objects.get(user__username='dee')); "
        f"made = [memory_create(author=author, title=f'old {{i:02d}}', visibility='team') for i in range({PAGE + 5})]; "
        "print(json.dumps([str(memory.id) for memory in made]))"
    )
    ids = json.loads(manage(cluster.env, "shell", "-c", script).splitlines()[-1])
    dee = login("dee")
    expect(titles(dee)).to_have_count(PAGE)
    expect(titles(dee).first).to_have_text(f"old {PAGE + 4}")
    # Events for memories below the loaded page: they are not drawn out of order at the bottom...
    patch(cluster, "dee", {"id": ids[2]}, title="old 02 edited")
    assert api(server, "DELETE", f"/api/v4/memories/{ids[1]}/", cluster.keys["dee"])[0] == 204
    newest = create(cluster, "dee", title="new while scrolled")
    expect(titles(dee).first).to_have_text("new while scrolled", timeout=LIVE)
    expect(titles(dee)).to_have_count(PAGE + 1)
    # ... and their page, loaded later, shows them as they are now.
    dee.get_by_role("button", name="Load older").click()
    expected = ["new while scrolled", *[f"old {i:02d}" for i in range(PAGE + 4, 2, -1)], "old 02 edited", "old 00"]
    expect(titles(dee)).to_have_text(expected)
    expect(dee.get_by_role("button", name="Load older")).to_be_hidden()
    # Scrolled to the bottom, a new memory still goes to the top.
    dee.locator("#memories .memory").last.scroll_into_view_if_needed()
    create(cluster, "dee", title="newer still")
    expect(titles(dee).first).to_have_text("newer still", timeout=LIVE)
    expect(titles(dee).nth(1)).to_have_text(newest["title"])


def test_filters_are_in_the_url_and_live_events_honour_them(cluster, login):
    server = cluster.servers[0]
    max_ = login("max")
    filters = max_.get_by_role("search", name="Filter the memories")
    filters.get_by_label("Tag").fill("plans")
    filters.get_by_role("button", name="Filter").click()
    max_.wait_for_url(f"{server.http}/?tag=plans")
    expect(max_.locator("#connection")).to_have_text("live", timeout=10_000)

    other = create(cluster, "ann", title="Lunch menu", tags=["food"])
    match = create(cluster, "ann", title="Q3 plans", tags=["plans"], visibility="team")
    expect(card(max_, match)).to_be_visible(timeout=LIVE)
    expect(card(max_, other)).to_have_count(0)  # created before the match: decided by now
    # One that stops matching leaves; one that starts matching comes in.
    patch(cluster, "ann", match, tags=["done"])
    patch(cluster, "ann", other, tags=["food", "plans"])
    expect(card(max_, other)).to_be_visible(timeout=LIVE)
    expect(card(max_, match)).to_have_count(0)

    # Tags and owners are links to their filter.
    card(max_, other).get_by_role("link", name="#food").click()
    max_.wait_for_url(f"{server.http}/?tag=food")
    expect(titles(max_)).to_have_text(["Lunch menu"])
    card(max_, other).get_by_role("link", name="by ann").click()
    max_.wait_for_url(f"{server.http}/?owner=ann")
    expect(max_.get_by_label("Owner")).to_have_value("ann")
    mine = create(cluster, "max", title="Not ann's", tags=["plans"])
    theirs = create(cluster, "ann", title="Ann's private", visibility="private")  # never max's to see
    anns = create(cluster, "ann", title="Ann's public", visibility="public")
    expect(card(max_, anns)).to_be_visible(timeout=LIVE)
    expect(card(max_, mine)).to_have_count(0)
    expect(card(max_, theirs)).to_have_count(0)
    # Owner and visibility together, by the form.
    filters.get_by_label("Visibility").select_option("public")
    filters.get_by_role("button", name="Filter").click()
    max_.wait_for_url(f"{server.http}/?owner=ann&visibility=public")
    expect(titles(max_)).to_have_text(["Ann's public"])
    # Oldest first: a new memory goes to the end, not the top.
    filters.get_by_label("Order").select_option("oldest")
    filters.get_by_role("button", name="Filter").click()
    max_.wait_for_url(f"{server.http}/?owner=ann&visibility=public&sort=oldest")
    expect(max_.locator("#connection")).to_have_text("live", timeout=10_000)
    later = create(cluster, "ann", title="Ann's later public", visibility="public")
    expect(titles(max_)).to_have_text(["Ann's public", later["title"]], timeout=LIVE)
    max_.get_by_role("link", name="Clear filters").click()
    max_.wait_for_url(f"{server.http}/")
    expect(card(max_, mine)).to_be_visible()
    expect(titles(max_).first).to_have_text(later["title"])


def test_times_and_authorship_are_shown_kept_current_and_changes_are_visible(cluster, login, artifacts):
    max_ = login("max")
    max_.clock.install()  # real time flows; fast_forward jumps it
    max_.reload()
    expect(max_.locator("#connection")).to_have_text("live", timeout=10_000)
    memory = create(cluster, "max", title="Standup notes", content="- done\n- next", tags=["team"])
    item = card(max_, memory)
    expect(item.locator("time.created")).to_have_text("just now", timeout=LIVE)
    expect(item.locator("time.created")).to_have_attribute("title", re.compile(r"\d{4}.*\d{1,2}:\d\d:\d\d"))
    expect(item.locator(".edited")).to_have_count(0)

    # Edited by someone else: the card says who changed what, and when.
    patch(cluster, "ann", memory, title="Standup notes (Tue)", tags=["team", "daily"])
    expect(item.locator(".change-note")).to_have_text("ann changed title, tags", timeout=LIVE)
    expect(item.locator(".memory-title")).to_have_class(re.compile("changed-field"))
    expect(item.locator(".edited")).to_have_text("edited just now by ann")
    max_.screenshot(path=str(artifacts / "screenshot-ui.png"))
    # Kept current: two minutes later, both say so.
    max_.clock.fast_forward("02:00")
    expect(item.locator("time.created")).to_have_text("2 min. ago")
    expect(item.locator(".edited")).to_have_text("edited 2 min. ago by ann")
    # A reload shows the same authorship, from the memory itself.
    max_.reload()
    expect(item.locator(".edited")).to_have_text(re.compile(r"^edited .+ by ann$"))
    expect(item.locator(".change-note")).to_have_count(0)


def test_a_delete_can_be_undone_and_a_second_browser_sees_it_go_and_come_back(cluster, login):
    """Needs the trash (issue 21 part 2): POST /memories/<id>/restore/ and the memory.restored event."""
    server = cluster.servers[0]
    max_, ann = login("max"), login("ann")
    memory = create(cluster, "max", title="Keep me", visibility="team")
    expect(card(ann, memory)).to_be_visible(timeout=LIVE)
    card(max_, memory).get_by_role("button", name=re.compile("Delete")).click()  # no confirmation
    toast = max_.locator("#toasts .toast")
    expect(toast).to_contain_text("Deleted “Keep me”.")
    expect(card(max_, memory)).to_have_count(0)
    expect(card(ann, memory).locator(".gone-note")).to_have_text("Deleted by max", timeout=LIVE)
    expect(toast.get_by_role("button", name="Undo")).to_be_focused()  # the keyboard goes on from there
    toast.get_by_role("button", name="Undo").click()
    for page in (max_, ann):
        expect(card(page, memory).locator(".memory-title")).to_have_text("Keep me", timeout=LIVE)
    expect(card(ann, memory).locator(".gone-note")).to_have_count(0)
    assert api(server, "GET", f"/api/v4/memories/{memory['id']}/", cluster.keys["max"])[0] == 200


def test_a_phone_gets_one_header_row_a_new_memory_action_and_no_sideways_scrolling(cluster, login, artifacts):
    long_tag = "a-very-long-tag-that-is-exactly-fifty-characters-x"
    assert len(long_tag) == 50
    create(cluster, "ann", title="Wide", content="x" * 120, tags=[long_tag], visibility="team")
    max_ = login("max", viewport=PHONE)
    expect(max_.locator(".tag", has_text=long_tag).first).to_be_visible()
    width = max_.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a {PHONE['width']} px screen"
    header = max_.locator("header.bar").bounding_box()
    new = max_.get_by_role("link", name="New memory")
    menu = max_.get_by_role("button", name="Menu")
    assert header["height"] < 64  # one row
    for part in (max_.locator(".brand"), max_.locator("#connection"), new, menu):
        box = part.bounding_box()
        assert header["y"] <= box["y"] and box["y"] + box["height"] <= header["y"] + header["height"]
    expect(new).to_be_in_viewport()
    max_.screenshot(path=str(artifacts / "screenshot-ui-phone.png"))
    new.click()
    expect(max_.locator("#create-form").get_by_label("Title")).to_be_in_viewport()
    # The menu opens below the header row.
    expect(max_.get_by_role("button", name="Log out")).to_be_hidden()
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(max_.get_by_role("button", name="Log out")).to_be_visible()


def test_a_draft_survives_the_session_ending_elsewhere_and_a_re_login(cluster, login):
    server = cluster.servers[0]
    max_ = login("max")
    form = max_.locator("#create-form")
    form.get_by_label("Title").fill("Typed before the logout")
    form.get_by_label("Content").fill("every word of it")
    # Another tab of this browser logs out: the session this page had is over.
    other = max_.context.new_page()
    other.goto(f"{server.http}/")
    other.get_by_role("button", name="Log out").click()
    other.wait_for_url(re.compile("/login/"))
    other.close()
    form.get_by_role("button", name="Save").click()
    max_.wait_for_url(re.compile(r"/login/\?next="))
    log_in(max_, "max")
    max_.wait_for_url(f"{server.http}/#new-heading")  # never a 405
    expect(form.get_by_label("Title")).to_have_value("Typed before the logout")
    expect(form.get_by_label("Content")).to_have_value("every word of it")
    expect(form.locator(".draft-note")).to_contain_text("Your unsaved draft is back")
    form.get_by_role("button", name="Save").click()
    expect(titles(max_).filter(has_text="Typed before the logout")).to_have_count(1)
    max_.reload()  # saved: the draft is gone
    expect(form.get_by_label("Title")).to_have_value("")
    expect(form.locator(".draft-note")).to_have_count(0)

    # The edit form keeps its draft too, with the version it was made against.
    memory = create(cluster, "max", title="Edit me", content="first")
    max_.goto(f"{server.http}/memories/{memory['id']}/edit/")
    max_.get_by_label("Content").fill("first, then more")
    max_.reload()
    expect(max_.get_by_label("Content")).to_have_value("first, then more")
    max_.get_by_role("button", name="Save").click()
    max_.wait_for_url(f"{server.http}/")
    expect(card(max_, memory).locator(".memory-content")).to_have_text("first, then more")
    max_.goto(f"{server.http}/memories/{memory['id']}/edit/")
    expect(max_.get_by_label("Content")).to_have_value("first, then more")
    expect(max_.locator(".draft-note")).to_have_count(0)

    # Logging out on purpose leaves no draft in the browser for the next person.
    max_.get_by_label("Content").fill("not for the next person")
    assert "puomemo:draft:" in max_.evaluate("Object.keys(localStorage).join()")
    max_.get_by_role("button", name="Log out").click()
    max_.wait_for_url(re.compile("/login/"))
    assert "puomemo:draft:" not in max_.evaluate("Object.keys(localStorage).join()")


def test_markdown_is_rendered_safely_and_long_memories_are_collapsed(cluster, login):
    max_ = login("max")
    content = "**Bold** and `code`\n\n<script>window.pwned = 1</script><img src=x onerror='window.pwned = 2'>\n\n"
    content += "\n\n".join(f"Paragraph {i} of a long memory." for i in range(20))
    memory = create(cluster, "ann", title="Markdown", content=content)
    item = card(max_, memory)
    expect(item.locator(".memory-content strong")).to_have_text("Bold", timeout=LIVE)
    expect(item.locator(".memory-content code")).to_have_text("code")
    assert item.locator("script, img").count() == 0
    assert max_.evaluate("window.pwned") is None
    more = item.get_by_role("button", name="Show more")
    expect(more).to_have_attribute("aria-expanded", "false")
    collapsed = item.locator(".memory-content").bounding_box()["height"]
    more.click()
    expect(item.get_by_role("button", name="Show less")).to_have_attribute("aria-expanded", "true")
    assert item.locator(".memory-content").bounding_box()["height"] > 2 * collapsed
    # The server's first render collapses it the same way.
    max_.reload()
    expect(card(max_, memory).get_by_role("button", name="Show more")).to_be_visible()
    assert max_.evaluate("window.pwned") is None


def axe_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page, one line each."""
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{page.url}: {v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_every_page_passes_axe_core_and_the_list_works_by_keyboard(cluster, browser, login):
    server = cluster.servers[0]
    memory = create(cluster, "ann", title="Accessible", content="**x**", tags=["a11y"], visibility="team")
    ann = login("ann")
    violations = axe_violations(ann)
    # Every page the header links to (the list, search, the trash), a memory's page, its edit page, search
    # results, a filtered list, and the 404 page.
    links = ann.locator("header a").evaluate_all("(links) => links.map((a) => a.href)")
    pages = {
        *links,
        f"{server.http}/memories/{memory['id']}/",
        f"{server.http}/memories/{memory['id']}/edit/",
        f"{server.http}/search/?q=accessible",
        f"{server.http}/?tag=a11y",
    }
    for url in sorted(pages):
        ann.goto(url)
        violations += axe_violations(ann)
    phone = login("gus", viewport=PHONE)
    violations += axe_violations(phone)
    phone.goto(f"{server.http}/memories/{memory['id']}/edit/")  # a team memory: not the guest's to see
    expect(phone.get_by_role("heading", name="Not found")).to_be_visible()
    violations += axe_violations(phone)
    anonymous = browser.new_page()
    anonymous.goto(f"{server.http}/login/")
    violations += axe_violations(anonymous)
    anonymous.close()
    assert not violations, "\n".join(violations)

    # The keyboard reaches every control of the list, in order, from the top.
    ann.goto(f"{server.http}/")
    expect(ann.locator("#connection")).to_have_text("live", timeout=10_000)
    reached = []
    while "Save" not in reached and len(reached) < 400:  # the create form's Save comes after the whole list
        ann.keyboard.press("Tab")
        reached.append(ann.evaluate("(e => (e.id || e.textContent || e.name).trim())(document.activeElement)"))
    for control in ("Skip to content", "filter-q", "filter-tag", "Filter", "#a11y", "by ann", "Edit Accessible"):
        assert control in reached, f"{control} not reached by Tab: {reached}"
    for control in ("Delete Accessible", "id_title", "id_content", "Save"):
        assert control in reached, f"{control} not reached by Tab: {reached}"
    # Enter on a focused tag follows it.
    ann.locator(f"#memory-{memory['id']} .tag").focus()
    ann.keyboard.press("Enter")
    ann.wait_for_url(f"{server.http}/?tag=a11y")


def test_the_online_list_drops_a_user_who_logs_out(cluster, login):
    ann, max_ = login("ann"), login("max")
    presence = ann.locator("#presence")
    expect(presence).to_contain_text("max", timeout=LIVE)
    tab = max_.context.new_page()  # a second tab of the same session: both its sockets close on logout
    tab.goto(cluster.servers[0].http + "/")
    expect(tab.locator("#connection")).to_have_text("live", timeout=10_000)
    expect(presence).to_contain_text("max (2)", timeout=LIVE)
    tab.get_by_role("button", name="Log out").click()
    tab.wait_for_url(re.compile("/login/"))
    expect(max_.locator("#connection")).to_have_text(re.compile("signed out"), timeout=10_000)
    expect(presence).not_to_contain_text("max", timeout=5000)
    expect(presence).to_contain_text("ann")
