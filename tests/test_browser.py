"""The web UI in Chromium against a real server: live lists, roles, restarts, polling, conflicts, the test client."""

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import websockets
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.support.browser import logged_in
from tests.support.live import ROOT, CookieClient, Server, api, close_code, manage, next_of_type

pytestmark = pytest.mark.browser

# pat's password is changed by a test: the others keep theirs.
USERS = {"ann": ("crew", "admin"), "max": ("crew", "member"), "gus": ("crew", "guest"), "pat": ("crew", "member")}
LIVE = 2000  # ms: the bound for a change to show in another browser
LEAVE = 4000  # ms: a card deleted by someone else says so this long before it goes (web/static/web/live-list.js)


@pytest.fixture(scope="module")
def cluster(cluster_factory):
    # Re-check access every second, so that a logout shows within the test's patience.
    settings = {"PUOMEMO_WS_REVALIDATE_SECONDS": "1"}
    return cluster_factory("browser", users=USERS, settings=settings, count=1)


def memories(page: Page):
    return page.locator("#memories .memory-title")


def test_two_browsers_of_a_tenant_see_each_others_changes_live(cluster, browser, artifacts):
    server = cluster.servers[0]
    ann, max_ = logged_in(browser, server, "ann"), logged_in(browser, server, "max")
    expect(ann.locator("#presence")).to_contain_text("max")

    # Created on a page: the other page shows it.
    max_.get_by_label("Title").fill("Written on a page")
    max_.get_by_label("Content").fill("by max, in the browser")
    max_.locator("#create-form").get_by_label("Visibility").select_option("team")
    max_.get_by_role("button", name="Save").click()
    expect(memories(ann).filter(has_text="Written on a page")).to_have_count(1, timeout=LIVE)

    # Created over REST: both pages show it, the owner's with its controls.
    status, made = api(server, "POST", "/api/v4/memories/", cluster.keys["max"], {"title": "Made with curl"})
    assert status == 201
    for page in (ann, max_):
        expect(memories(page).filter(has_text="Made with curl")).to_have_count(1, timeout=LIVE)
    item = max_.locator(f"#memory-{made['id']}")
    expect(item.get_by_role("link", name=re.compile("Edit"))).to_be_visible()

    # Edited on a page (from the edit form, against its version): the other page shows the new title.
    item.get_by_role("link", name=re.compile("Edit")).click()
    max_.get_by_label("Title").fill("Made with curl, edited")
    max_.get_by_role("button", name="Save").click()
    max_.wait_for_url(f"{server.http}/")
    expect(ann.locator(f"#memory-{made['id']} .memory-title")).to_have_text("Made with curl, edited", timeout=LIVE)
    # ... and over REST.
    api(server, "PATCH", f"/api/v4/memories/{made['id']}/", cluster.keys["ann"], {"content": "ann was here"})
    expect(max_.locator(f"#memory-{made['id']} .memory-content")).to_have_text("ann was here", timeout=LIVE)
    ann.screenshot(path=str(artifacts / "screenshot-ui.png"))

    # Deleted on a page (the admin deletes the member's team memory): the other page says who, then drops it.
    expect(max_.locator("#connection")).to_have_text("live")
    ann.locator(f"#memory-{made['id']}").get_by_role("button", name=re.compile("Delete")).click()
    expect(ann.locator(f"#memory-{made['id']}")).to_have_count(0)  # no confirmation: an Undo instead
    expect(max_.locator(f"#memory-{made['id']} .gone-note")).to_have_text("Deleted by ann", timeout=LIVE)
    expect(max_.locator(f"#memory-{made['id']}")).to_have_count(0, timeout=LIVE + LEAVE)
    # ... and over REST.
    written = max_.locator("#memories li", has_text="Written on a page").get_attribute("data-id")
    assert api(server, "DELETE", f"/api/v4/memories/{written}/", cluster.keys["max"])[0] == 204
    expect(ann.locator(f"#memory-{written} .gone-note")).to_have_text("Deleted by max", timeout=LIVE)
    expect(memories(ann).filter(has_text="Written on a page")).to_have_count(0, timeout=LIVE + LEAVE)
    ann.context.close()
    max_.context.close()


def test_an_edit_made_meanwhile_is_shown_live_and_never_overwritten(cluster, browser):
    server = cluster.servers[0]
    max_, ann = logged_in(browser, server, "max"), logged_in(browser, server, "ann")
    _, memory = api(server, "POST", "/api/v4/memories/", cluster.keys["max"], {"title": "Agenda", "content": "1. plan"})
    max_.goto(f"{server.http}/memories/{memory['id']}/edit/")
    max_.wait_for_function("window.puomemo?.client.state === 'open'")  # typing before then is not relayed
    max_.get_by_label("Content").fill("1. plan\n2. mine")
    # Others' lists show who is editing.
    expect(ann.locator(f"#memory-{memory['id']} .typing")).to_have_text("max is editing…", timeout=LIVE)
    api(server, "PATCH", f"/api/v4/memories/{memory['id']}/", cluster.keys["ann"], {"content": "1. plan\n2. ann's"})
    expect(max_.locator("#live-conflict")).to_contain_text("Changed by ann meanwhile", timeout=LIVE)
    max_.get_by_role("button", name="Save").click()  # saving anyway is refused, and shows both versions
    expect(max_.locator("#conflict")).to_contain_text("Changed by ann meanwhile")
    expect(max_.get_by_label("Content")).to_have_value("1. plan\n2. ann's")
    expect(max_.locator("#conflict")).to_contain_text("2. mine")
    assert (
        api(server, "GET", f"/api/v4/memories/{memory['id']}/", cluster.keys["max"])[1]["content"]
        == "1. plan\n2. ann's"
    )
    max_.context.close()


def test_a_guest_never_sees_a_team_memory_during_a_burst_of_writes(cluster, browser):
    server = cluster.servers[0]
    gus = logged_in(browser, server, "gus")
    expect(gus.locator("#create-form")).to_have_count(0)  # guests get no write controls
    # Record every memory title the page ever shows, however briefly.
    gus.evaluate(
        """() => {
        window.shown = [];
        const record = (node) => node.querySelectorAll?.('.memory-title').forEach((t) => shown.push(t.textContent));
        new MutationObserver((changes) => changes.forEach((c) => c.addedNodes.forEach(record)))
          .observe(document.getElementById('memories'), {childList: true, subtree: true});
    }"""
    )

    def burst() -> None:
        for i in range(12):
            key = cluster.keys["ann" if i % 2 else "max"]
            _, team = api(server, "POST", "/api/v4/memories/", key, {"title": f"secret team {i}", "visibility": "team"})
            _, public = api(server, "POST", "/api/v4/memories/", key, {"title": f"open {i}", "visibility": "public"})
            api(server, "POST", "/api/v4/memories/", key, {"title": f"secret private {i}", "visibility": "private"})
            api(server, "PATCH", f"/api/v4/memories/{team['id']}/", key, {"title": f"secret team {i} edited"})
            if i % 3 == 0:  # made team: the guest loses it, and never sees its new title
                api(
                    server,
                    "PATCH",
                    f"/api/v4/memories/{public['id']}/",
                    key,
                    {"title": f"secret was open {i}", "visibility": "team"},
                )
            elif i % 3 == 1:
                api(server, "DELETE", f"/api/v4/memories/{public['id']}/", key)

    writer = threading.Thread(target=burst)
    writer.start()
    writer.join(60)
    expected = [f"open {i}" for i in reversed(range(12)) if i % 3 == 2]  # newest first
    # The exact list, not just its length: mid-burst, a deleted one can stand in for one still to come.
    expect(memories(gus).filter(has_text=re.compile(r"^open \d+$"))).to_have_text(expected, timeout=10000)
    shown = gus.evaluate("window.shown")
    # Drawn live: the observer was set after the page loaded. (A memory made team within one
    # 100 ms batch of its creation is rightly never drawn, so only the ones that stay are asserted.)
    assert set(expected) <= set(shown)
    assert not [title for title in shown if "secret" in title]
    gus.context.close()


def restart(server: Server) -> None:
    """Start the server again on the same port (clients reconnect to the address they knew)."""
    server.process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(server.port), "--no-worker"],
        cwd=ROOT,
        env=server_env,
        stdout=server.log.open("a"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{server.http}/api/v4/schema/", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not come back")


server_env: dict = {}


# --- The session on /ws -----------------------------------------------------------


class BlankPage(BaseHTTPRequestHandler):
    """Another site's page: empty."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<!doctype html><title>elsewhere</title>")

    def log_message(self, *args) -> None:
        pass


def test_a_page_of_another_origin_cannot_ride_the_session(cluster, browser):
    server = cluster.servers[0]
    ann = logged_in(browser, server, "ann")
    # Another port of the same host: same site, so Chromium sends the session cookie; the server ignores it.
    other = HTTPServer(("127.0.0.1", 0), BlankPage)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        ann.goto(f"http://127.0.0.1:{other.server_address[1]}/")
        code = ann.evaluate(
            """(url) => new Promise((done) => { const ws = new WebSocket(url); ws.onclose = (e) => done(e.code); })""",
            server.ws,
        )
    finally:
        other.shutdown()
        other.server_close()
    assert code == 4001
    ann.context.close()


def apart(scenario) -> None:
    """Run an async scenario on a loop of its own thread: Playwright's sync API holds this thread's."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, scenario).result()


async def opened(ws) -> dict:
    await ws.send(json.dumps({"type": "subscribe", "data": {"channels": ["memories"]}}))
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


def test_a_same_origin_page_rides_its_session_and_nothing_else_does(cluster):
    apart(a_same_origin_page_rides_its_session_and_nothing_else_does(cluster))


async def a_same_origin_page_rides_its_session_and_nothing_else_does(cluster):
    server = cluster.servers[0]
    browser = CookieClient(server).login("max")
    ws = await browser.socket(origin=server.http)
    assert (await opened(ws))["type"] == "subscribed"
    status, memory = api(
        server, "POST", "/api/v4/memories/", cluster.keys["ann"], {"title": "Hello", "visibility": "team"}
    )
    assert status == 201
    event = await next_of_type(ws, "memory.created")
    assert event["data"]["memory"]["id"] == memory["id"]
    await ws.close()

    # Another page on an allowed host but another origin (port) gets no session: 4001, not wendy's memories.
    ws = await browser.socket(origin="http://127.0.0.1:1")
    assert await close_code(ws) == 4001
    # Without an Origin (not a browser page) the cookie is not enough either.
    ws = await browser.socket(origin=None)
    assert await close_code(ws) == 4001
    # A foreign site is refused at the handshake.
    with pytest.raises(websockets.InvalidStatus) as refused:
        await browser.socket(origin="http://evil.example")
    assert refused.value.response.status_code == 403
    # Not logged in: 4001.
    anonymous = CookieClient(server)
    anonymous.opener.open(f"{server.http}/login/", timeout=10).read()
    with pytest.raises(StopIteration):
        anonymous.cookie("sessionid")
    ws = await websockets.connect(server.ws, origin=server.http)
    assert await close_code(ws) == 4001


def test_logging_out_closes_the_sessions_sockets(cluster):
    apart(logging_out_closes_the_sessions_sockets(cluster))


async def logging_out_closes_the_sessions_sockets(cluster):
    server = cluster.servers[0]
    browser = CookieClient(server).login("max")
    other = CookieClient(server).login("max")  # another device of the same user stays connected
    ws, kept = await browser.socket(origin=server.http), await other.socket(origin=server.http)
    assert (await opened(ws))["type"] == (await opened(kept))["type"] == "subscribed"
    await asyncio.to_thread(browser.logout)
    assert await asyncio.wait_for(close_code(ws), 8) == 4001
    await kept.send('{"type": "ping"}')
    assert json.loads(await asyncio.wait_for(kept.recv(), 5))["type"] == "pong"
    await kept.close()


def test_a_password_change_closes_the_users_session_sockets(cluster):
    apart(a_password_change_closes_the_users_session_sockets(cluster))


async def a_password_change_closes_the_users_session_sockets(cluster):
    server = cluster.servers[0]
    browser = CookieClient(server).login("ann")
    ws = await browser.socket(origin=server.http)
    assert (await opened(ws))["type"] == "subscribed"
    script = "from django.contrib.auth.models import User; u = User.objects.get(username='ann'); "
    script += "u.set_password('pw-live-123'); u.save()"  # the same password, a new salt: sessions are void
    await asyncio.to_thread(manage, cluster.env, "shell", "-c", script)
    assert await asyncio.wait_for(close_code(ws), 8) == 4001
    # The pages agree: that session is logged out.
    assert "/login/" in browser.opener.open(f"{server.http}/", timeout=10).geturl()


# Every state the page's client reports from now on, as "state code".
RECORD_STATES = "() => { window.states = []; puomemo.client.on('state', (e) => states.push(`${e.state} ${e.code}`)); }"


def test_a_password_changed_in_another_tab_keeps_this_tab_live_and_signs_other_browsers_out(cluster, browser):
    server = cluster.servers[0]
    tab_a = logged_in(browser, server, "pat")
    elsewhere = logged_in(browser, server, "pat")  # another browser: a session of its own
    tab_a.evaluate(RECORD_STATES)
    tab_b = tab_a.context.new_page()  # the same browser: the same cookies
    tab_b.goto(f"{server.http}/")
    tab_b.get_by_role("link", name="Change password").click()
    tab_b.get_by_label("Current password").fill("pw-live-123")
    tab_b.get_by_label("New password", exact=True).fill("pw-live-456-changed")
    tab_b.get_by_label("New password again").fill("pw-live-456-changed")
    tab_b.get_by_role("button", name="Change password").click()
    expect(tab_b.get_by_role("heading", name="Password changed")).to_be_visible()

    # The re-check (every second here) closes tab A's socket of the old session key with 4001; the page finds
    # the browser still signed in, and its new socket (the new cookie) opens.
    tab_a.wait_for_function("() => states.includes('closed 4001') && states.at(-1) === 'open null'", timeout=10_000)
    expect(tab_a.locator("#connection")).to_have_text("live")
    assert tab_a.evaluate("states").count("closed 4001") == 1
    expect(elsewhere.locator("#connection")).to_have_text(re.compile("^signed out"), timeout=10_000)

    status, _ = api(server, "POST", "/api/v4/memories/", cluster.keys["max"], {"title": "After the change"})
    assert status == 201
    expect(memories(tab_a).filter(has_text="After the change")).to_have_count(1, timeout=LIVE)
    expect(tab_a.locator("#connection")).to_have_text("live")
    tab_a.context.close()
    elsewhere.context.close()


def test_a_reconnect_refused_again_after_4001_shows_signed_out_and_stops(cluster, browser):
    server = cluster.servers[0]
    sockets: list[WebSocketRoute] = []
    refuse = {"on": False}

    def route(ws: WebSocketRoute) -> None:
        sockets.append(ws)
        if refuse["on"]:  # as if the server refused the cookie the session still logs in with
            ws.close(code=4001, reason="refused")
        else:
            ws.connect_to_server()

    max_ = logged_in(browser, server, "max", route_websocket=route)
    max_.evaluate(RECORD_STATES)
    opened = len(sockets)
    refuse["on"] = True
    sockets[-1].close(code=4001, reason="closed")  # the live socket, as the re-check closes it
    expect(max_.locator("#connection")).to_have_text(re.compile("^signed out"), timeout=10_000)
    assert max_.evaluate("states").count("closed 4001") == 2
    max_.wait_for_timeout(1500)  # no further attempt: one reconnect a 4001 in a row
    assert len(sockets) == opened + 1
    max_.context.close()


def test_a_server_restart_shows_reconnecting_then_live_with_what_changed_meanwhile(cluster, browser):
    server = cluster.servers[0]
    server_env.update(cluster.env)
    max_ = logged_in(browser, server, "max")
    server.stop()
    expect(max_.locator("#connection")).to_have_text(re.compile("reconnecting"), timeout=5000)
    # Written while the server is down, straight into the database: the page gets it by resume.
    manage(
        cluster.env,
        "shell",
        "-c",
        "from accounts.models import Membership; from accounts.principal import Principal; "
        "from memories.services import memory_create; "
        "author = Principal.from_membership(Membership.objects.get(user__username='ann')); "
        "memory_create(author=author, title='Written while you were away', visibility='team')",
    )
    restart(server)
    expect(max_.locator("#connection")).to_have_text("live", timeout=20_000)
    expect(memories(max_).filter(has_text="Written while you were away")).to_have_count(1, timeout=LIVE)
    max_.context.close()


def test_a_blocked_websocket_falls_back_to_polling(cluster, browser):
    server = cluster.servers[0]
    blocked = {"on": True}
    ann = logged_in(browser, server, "ann", block_websocket=blocked)
    expect(ann.locator("#connection")).to_have_text("polling", timeout=10_000)
    api(server, "POST", "/api/v4/memories/", cluster.keys["max"], {"title": "Seen by polling", "visibility": "team"})
    expect(memories(ann).filter(has_text="Seen by polling")).to_have_count(1, timeout=8000)
    expect(ann.locator("#connection")).to_have_text("polling")  # not "offline": the changes still arrive
    # The client kept trying meanwhile: once a socket opens, the page is live again, and stops polling.
    blocked["on"] = False
    expect(ann.locator("#connection")).to_have_text("live", timeout=30_000)
    api(server, "POST", "/api/v4/memories/", cluster.keys["max"], {"title": "Seen live again", "visibility": "team"})
    expect(memories(ann).filter(has_text="Seen live again")).to_have_count(1, timeout=LIVE)
    expect(memories(ann).filter(has_text="Seen by polling")).to_have_count(1)  # the resume doubled nothing
    ann.context.close()


def test_the_test_client_page_connects_and_shows_a_pong(cluster, browser):
    server = cluster.servers[0]
    ann = logged_in(browser, server, "ann")
    ann.get_by_role("link", name="WebSocket test client").click()
    ann.get_by_role("button", name="Connect", exact=True).click()
    expect(ann.locator("#tc-state")).to_have_text("open", timeout=5000)
    ann.get_by_role("button", name="Subscribe", exact=True).click()
    expect(ann.locator("#tc-log")).to_contain_text('"type":"subscribed"', timeout=5000)
    ann.get_by_role("button", name="Ping").click()
    expect(ann.locator("#tc-log .frame-out").last).to_contain_text('"type":"ping"')
    expect(ann.locator("#tc-log .frame-in").last).to_contain_text('"type":"pong"', timeout=5000)
    expect(ann.locator("#tc-log .frame-in time").last).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))
    # A token goes through a ticket, never into the URL; a bad one is refused before any socket.
    ann.get_by_role("button", name="Disconnect").click()
    expect(ann.locator("#tc-state")).to_have_text("closed", timeout=5000)
    ann.get_by_label("a token").check()
    ann.get_by_role("textbox", name="Token").fill(cluster.keys["ann"])
    ann.get_by_role("button", name="Connect", exact=True).click()
    expect(ann.locator("#tc-state")).to_have_text("open", timeout=5000)
    expect(ann.locator("#tc-log")).to_contain_text("ticket=…")
    assert cluster.keys["ann"] not in ann.locator("#tc-log").inner_text()
    ann.context.close()
