"""HTTP limits against a real daphne process: over-long headers get an answer, and /api/ errors are JSON."""

import json
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.live

HEADER_LIMIT = 16384  # Twisted's HTTPChannel: per line and for the request line and headers in all


@pytest.fixture(scope="module")
def server(cluster_factory):
    """One server process in production mode (DEBUG off) on a database of its own, without Redis."""
    settings = {"DEBUG": "0", "SECRET_KEY": "live-http-test-key"}
    return cluster_factory("live-http", settings=settings, count=1, args=(), redis=False).servers[0]


def fetch(server, path: str, *, headers: dict | None = None, body: bytes | None = None) -> tuple[int, str, bytes]:
    """Status, Content-Type and body of a request, error or not."""
    request = urllib.request.Request(f"{server.http}{path}", data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def assert_still_serving(server):
    assert fetch(server, "/api/v4/schema/")[0] == 200


def test_a_100_kb_authorization_header_gets_431_json(server):
    status, content_type, body = fetch(
        server, "/api/v4/memories/", headers={"Authorization": "Bearer " + "x" * 100_000}
    )
    assert (status, content_type) == (431, "application/json")
    assert str(HEADER_LIMIT) in json.loads(body)["detail"]
    assert_still_serving(server)


def test_headers_over_the_limit_in_all_get_431_json(server):
    headers = {f"X-Filler-{n}": "y" * 4000 for n in range(5)}  # each line fits, all of them do not
    status, content_type, body = fetch(server, "/api/v4/memories/", headers=headers)
    assert (status, content_type) == (431, "application/json")
    assert str(HEADER_LIMIT) in json.loads(body)["detail"]
    assert_still_serving(server)


def test_a_request_line_over_the_limit_gets_414_json(server):
    status, content_type, body = fetch(server, "/api/v4/memories/?q=" + "z" * 20_000)
    assert (status, content_type) == (414, "application/json")
    assert "detail" in json.loads(body)
    assert_still_serving(server)


def test_a_body_over_the_upload_limit_gets_413_json(server):
    body = json.dumps({"username": "u", "password": "p" * 3_000_000}).encode()
    status, content_type, raw = fetch(
        server, "/api/v4/auth/token/", headers={"Content-Type": "application/json"}, body=body
    )
    assert (status, content_type) == (413, "application/json")
    assert "2621440" in json.loads(raw)["detail"]


@pytest.mark.parametrize("path", ["/api/v4/nowhere/", "/api/v4/memories/not-a-uuid/"])
def test_an_unknown_api_path_gets_404_json(server, path):
    status, content_type, body = fetch(server, path)
    assert (status, content_type) == (404, "application/json")
    assert json.loads(body) == {"detail": "Not found."}


def test_a_request_twisted_cannot_parse_gets_400_json(server):
    # A multipart body without a boundary: Twisted refuses it before Django sees it.
    status, content_type, body = fetch(
        server, "/api/v4/auth/token/", headers={"Content-Type": "multipart/form-data"}, body=b"x"
    )
    assert (status, content_type) == (400, "application/json")
    assert "could not be parsed" in json.loads(body)["detail"]
    assert_still_serving(server)
