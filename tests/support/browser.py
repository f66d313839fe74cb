"""Headless Chromium (Playwright, Debian's /usr/bin/chromium) logged in to a real server."""

import re
from collections.abc import Callable

from playwright.sync_api import Browser, Page, WebSocketRoute, expect

from tests.support.live import Server

DESKTOP = {"width": 1200, "height": 820}
PHONE = {"width": 390, "height": 844}  # a common phone's CSS pixels


def log_in(page: Page, username: str) -> None:
    """Fill in and send the login form the page shows."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw-live-123")
    page.get_by_role("button", name="Log in").click()


def logged_in(
    browser: Browser,
    server: Server,
    username: str,
    *,
    block_websocket: dict | None = None,
    route_websocket: Callable[[WebSocketRoute], None] | None = None,
    viewport: dict | None = None,
) -> Page:
    """A fresh browser context, logged in through the form, on the memory page with its socket live."""
    context = browser.new_context(viewport=viewport or DESKTOP)
    if block_websocket is not None:
        # As a proxy that refuses WebSockets: every /ws handshake fails while block_websocket["on"].
        def route_websocket(ws: WebSocketRoute) -> None:
            if block_websocket["on"]:
                ws.close(reason="blocked")
            else:
                ws.connect_to_server()

    if route_websocket is not None:  # a Playwright handler for every /ws the context's pages open
        context.route_web_socket(re.compile(r"/ws$"), route_websocket)
    page = context.new_page()
    page.goto(f"{server.http}/login/")
    log_in(page, username)
    page.wait_for_url(f"{server.http}/")
    if block_websocket is None:
        expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
    return page
