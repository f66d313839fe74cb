"""The search page and the trash page in Chromium against a real server."""

import re

import pytest
from playwright.sync_api import expect

from tests.support.browser import logged_in
from tests.support.live import api

pytestmark = pytest.mark.browser

USERS = {"ann": ("crew", "admin"), "max": ("crew", "member"), "gus": ("crew", "guest")}


@pytest.fixture(scope="module")
def cluster(cluster_factory):
    # Without the embeddings worker: nothing gets embedded, so search finds by words alone.
    return cluster_factory("trash-search", users=USERS, count=1)


def test_search_shows_highlighted_results_that_lead_to_the_memory(cluster, browser, artifacts):
    server = cluster.servers[0]
    key = cluster.keys["max"]
    status, dentist = api(
        server,
        "POST",
        "/api/v4/memories/",
        key,
        {"title": "Dentist on Tuesday", "content": "Dr. Okafor at 3pm <b>bring</b> the card", "tags": ["health"]},
    )
    assert status == 201
    api(server, "POST", "/api/v4/memories/", key, {"title": "<img src=x onerror=alert(1)> dentist's invoice"})
    api(server, "POST", "/api/v4/memories/", key, {"title": "Team lunch", "content": "Pizza on Friday"})
    api(server, "POST", "/api/v4/memories/", key, {"title": "Max's own", "visibility": "private"})
    page = logged_in(browser, server, "gus")  # a guest: sees only public memories
    api(server, "POST", "/api/v4/memories/", key, {"title": "Public dentist list", "visibility": "public"})
    page.get_by_role("link", name="Search").click()
    page.get_by_label("Words or meaning").fill("dentist")
    page.get_by_role("button", name="Search").click()
    results = page.locator("li.result")
    expect(results).to_have_count(1)  # the team memories are not the guest's to see
    expect(results.first.locator("mark")).to_have_text("dentist")

    page.close()
    page = logged_in(browser, server, "ann")
    page.goto(f"{server.http}/search/?q=dentists")
    expect(results := page.locator("li.result")).to_have_count(3)
    first = results.filter(has_text="Dentist on Tuesday")
    expect(first.locator("mark").first).to_have_text("Dentist")
    expect(first).to_contain_text("by max")
    expect(first).to_contain_text("#health")
    expect(first).to_contain_text("bring")  # the content's markup is text, not HTML
    expect(first.locator("b")).to_have_count(0)
    expect(page.locator("li.result img")).to_have_count(0)
    expect(page.locator("li.result").filter(has_text="<img src=x")).to_have_count(1)
    assert not re.search(r"score|\d\.\d{3}", page.locator("ol.results").inner_text())
    page.screenshot(path=str(artifacts / "search.png"), full_page=True)

    first.get_by_role("link", name=re.compile("Tuesday")).click()
    page.wait_for_url(f"{server.http}/memories/{dentist['id']}/")
    expect(page.get_by_role("heading", name="Dentist on Tuesday")).to_be_visible()
    expect(page.get_by_role("link", name="Edit")).to_be_visible()  # an admin may change a team memory

    page.goto(f"{server.http}/search/?q=astronomy")
    expect(page.locator("li.result")).to_have_count(0)
    expect(page.get_by_text("Nothing matches")).to_be_visible()
    page.context.close()


def test_a_deleted_memory_is_restored_from_the_trash_page(cluster, browser, artifacts):
    server = cluster.servers[0]
    status, made = api(server, "POST", "/api/v4/memories/", cluster.keys["max"], {"title": "Binned by mistake"})
    assert status == 201
    page = logged_in(browser, server, "max")
    item = page.locator(f"#memory-{made['id']}")
    expect(item).to_have_count(1)
    item.get_by_role("button", name=re.compile("Delete")).click()
    expect(page.locator(f"#memory-{made['id']}")).to_have_count(0)

    page.goto(f"{server.http}/trash/")
    binned = page.locator(f"#trash-{made['id']}")
    expect(binned).to_contain_text("deleted")
    expect(binned).to_contain_text("by max")
    page.screenshot(path=str(artifacts / "trash.png"), full_page=True)
    binned.get_by_role("button", name=re.compile("Restore")).click()
    page.wait_for_url(f"{server.http}/")
    expect(page.locator(f"#memory-{made['id']} .memory-title")).to_have_text("Binned by mistake")
    assert api(server, "GET", f"/api/v4/memories/{made['id']}/", cluster.keys["ann"])[0] == 200

    page.goto(f"{server.http}/trash/")
    expect(page.locator(f"#trash-{made['id']}")).to_have_count(0)
    expect(page.get_by_text("The trash is empty.")).to_be_visible()
    page.context.close()
