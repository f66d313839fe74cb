"""What makes the REST write and an idle connection cheap (docs/performance.md), checked as behaviour, not timing."""

import asyncio
import inspect
import json
import threading
import tracemalloc

import pytest
from django.core import signals
from django.db.models.signals import post_save

from memories.models import Memory
from puomemo.http_handler import OneHopASGIHandler
from realtime import daphne
from realtime.limits import SlidingWindow
from tests.support.factories import api_key


async def asgi_post(handler, path: str, body: dict, token: str) -> tuple[int, dict]:
    """POST through the ASGI handler as daphne would call it: (status, JSON body)."""
    data = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
    }
    incoming = [{"type": "http.request", "body": data, "more_body": False}]
    sent = []

    async def receive():
        return incoming.pop(0) if incoming else await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    await handler(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


@pytest.mark.django_db(transaction=True)
def test_a_rest_request_runs_its_signals_middleware_and_view_on_one_pooled_thread(make_user):
    handler = OneHopASGIHandler()
    assert not inspect.iscoroutinefunction(handler._middleware_chain)  # loaded in sync mode: no hop per middleware
    threads = []

    def seen(**kwargs):
        threads.append(threading.current_thread().name)

    signals.request_started.connect(seen, dispatch_uid="test-started")
    signals.request_finished.connect(seen, dispatch_uid="test-finished")
    post_save.connect(seen, sender=Memory, dispatch_uid="test-saved")
    try:
        status, body = asyncio.run(asgi_post(handler, "/api/v4/memories/", {"title": "one hop"}, api_key(make_user())))
    finally:
        signals.request_started.disconnect(dispatch_uid="test-started")
        signals.request_finished.disconnect(dispatch_uid="test-finished")
        post_save.disconnect(sender=Memory, dispatch_uid="test-saved")
    assert status == 201 and body["title"] == "one hop", body
    # Started, the memory saved in the view, finished: the same long-lived thread of the handler's pool.
    assert len(threads) == 3 and len(set(threads)) == 1 and threads[0].startswith("http"), threads


def test_a_sliding_window_with_a_few_hits_weighs_little():
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        windows = [SlidingWindow() for _ in range(1000)]
        for window in windows:
            window.hit()
        each = (tracemalloc.get_traced_memory()[0] - start) / len(windows)
    finally:
        tracemalloc.stop()
    assert each < 250, each  # a deque's first block alone is ~770 bytes; each connection has three windows


def test_a_sliding_window_counts_the_last_seconds_only(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("realtime.limits.time.monotonic", lambda: now[0])
    window = SlidingWindow(seconds=10)
    assert [window.hit() for _ in range(3)] == [1, 2, 3]
    now[0] = 105.0
    assert window.hit() == 4
    now[0] = 110.0  # the first three leave the window
    assert window.hit() == 2
    window.forget_last()
    assert window.retry_after() == pytest.approx(5.0)


def test_daphne_scope_gets_the_connection_without_a_copy():
    handed = []

    class Server:
        connections = {"protocol": {}}

        def application(self, scope, receive, send):
            handed.append((scope, receive))
            return asyncio.sleep(0)

        def handle_reply(self, protocol, message): ...

    scope = {"type": "websocket", "path": "/ws"}

    async def create() -> None:
        inbox = daphne._create_application(Server(), "protocol", scope)
        await Server.connections["protocol"]["application_instance"]
        assert handed == [(scope, inbox.get)] and handed[0][0] is scope  # daphne's own per-connection scope
        assert scope[daphne.CONNECTION] == "protocol"

    asyncio.run(create())


class Transport:
    """What unsent_bytes() reads of a Twisted TCP transport."""

    dataBuffer, offset, _tempDataLen = b"", 0, 0


def test_a_send_reads_its_limits_from_a_cache_that_follows_the_settings(monkeypatch, settings):
    settings.PUOMEMO_WS_COMPRESSION_MIN_BYTES = 77
    assert daphne.send_limits()[2] == 77  # an overridden setting reaches the cache
    settings.PUOMEMO_WS_COMPRESSION_MIN_BYTES = 88
    assert daphne.send_limits()[2] == 88

    class NoSettings:
        def __getattr__(self, name):
            raise AssertionError(f"settings.{name} read on a send")

    protocol = type("Protocol", (), {"transport": Transport()})()
    monkeypatch.setattr(daphne, "settings", NoSettings())
    monkeypatch.setattr(daphne, "unsent", daphne.UnsentBytes())
    daphne._check_after_send(protocol, 0)  # the per-send bookkeeping: no settings read
    assert daphne.send_limits()[2] == 88
