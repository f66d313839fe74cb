"""Errors under /api/ are JSON with DEBUG on or off; Swagger UI works offline; who may read /metrics."""

import os
import re
import subprocess
import sys
from ipaddress import ip_network
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from accounts.models import Role
from memories.api import MemoryListApi
from memories.models import Memory

ROOT = Path(__file__).resolve().parent.parent

debug_on_and_off = pytest.mark.parametrize("debug", [True, False], ids=["DEBUG", "no-DEBUG"])


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body.get("detail"), str)
    return body


# --- Django's request limits ------------------------------------------------------------------------


@debug_on_and_off
def test_a_body_over_the_upload_limit_is_413_json_with_the_limit(debug, settings, make_user, client_for):
    settings.DEBUG = debug
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = client_for(make_user(Role.MEMBER))
    response = client.post("/api/v4/memories/", {"title": "big", "content": "x" * 2000}, format="json")
    body = assert_json_error(response, 413)
    assert "1000 bytes" in body["detail"]
    assert not Memory.objects.exists()


@debug_on_and_off
def test_a_form_with_too_many_fields_is_400_json_with_the_limit(debug, settings, make_user, client_for):
    settings.DEBUG = debug
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    client = client_for(make_user(Role.MEMBER))
    form = "&".join(f"field{n}=x" for n in range(20))
    response = client.post("/api/v4/memories/", form, content_type="application/x-www-form-urlencoded")
    body = assert_json_error(response, 400)
    assert "limit is 10" in body["detail"]
    assert not Memory.objects.exists()


# --- 404 and 500 -------------------------------------------------------------------------------------


@debug_on_and_off
@pytest.mark.parametrize("path", ["/api/v4/memories/not-a-uuid/", "/api/v4/nowhere/", "/api/nowhere"])
def test_an_unknown_api_path_is_404_json(debug, path, settings, db):
    settings.DEBUG = debug
    assert assert_json_error(APIClient().get(path), 404) == {"detail": "Not found."}


@debug_on_and_off
def test_an_unhandled_exception_is_500_json_without_a_traceback(debug, settings, make_user, client_for, monkeypatch):
    settings.DEBUG = debug

    def boom(self, request):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(MemoryListApi, "get", boom)
    client = client_for(make_user(Role.MEMBER))
    client.raise_request_exception = False
    response = client.get("/api/v4/memories/")
    assert assert_json_error(response, 500) == {"detail": "Internal server error."}
    assert b"secret internals" not in response.content
    assert b"Traceback" not in response.content


@debug_on_and_off
def test_errors_outside_the_api_stay_html(debug, settings, db):
    settings.DEBUG = debug
    response = APIClient().get("/nowhere/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@debug_on_and_off
@pytest.mark.parametrize("path", ["/memories/new", "/login", "/trash"])
def test_a_post_without_the_trailing_slash_is_redirected_not_a_500(debug, path, settings, db):
    settings.DEBUG = debug  # Django's own CommonMiddleware raises under DEBUG: a 500 for users of `make run`
    response = APIClient().post(path, {"title": "x"})
    assert response.status_code == 301
    assert response["Location"] == path + "/"


def test_drf_errors_are_left_as_they_are(db):
    response = APIClient().get("/api/v4/memories/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert "WWW-Authenticate" in response


# --- Swagger UI offline --------------------------------------------------------------------------------


def asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_swagger_ui_references_no_external_host(db):
    response = APIClient().get("/api/v4/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    urls = asset_urls(html)
    assert len(urls) >= 4  # favicon, CSS, the bundle and the standalone preset
    assert all(url.startswith("/static/") for url in urls), urls
    assert "cdn" not in html.lower()
    assert not re.search(r"https?://|//[a-z]", html, re.IGNORECASE)


def test_swagger_ui_assets_are_served(settings, db):
    settings.DEBUG = True  # whitenoise serves from the finders, as under `make run`; production runs collectstatic
    client = APIClient()
    for url in asset_urls(client.get("/api/v4/docs/").content.decode()):
        response = client.get(url)
        assert response.status_code == 200, url
        assert len(b"".join(response.streaming_content)) > 100, url


# --- /metrics ------------------------------------------------------------------------------------------


def metrics_from(address: str):
    return APIClient().get("/metrics", REMOTE_ADDR=address)


def test_metrics_are_open_to_anyone_by_default(settings, db):
    settings.PUOMEMO_METRICS_ALLOWED_IPS = []
    response = metrics_from("203.0.113.9")
    assert response.status_code == 200
    assert b"django_http_requests_before_middlewares_total" in response.content


@pytest.mark.parametrize("address", ["10.1.2.3", "192.0.2.7", "::ffff:10.9.9.9", "2001:db8::1"])
def test_metrics_are_served_to_allowed_addresses_and_networks(address, settings, db):
    settings.PUOMEMO_METRICS_ALLOWED_IPS = [ip_network(n) for n in ("10.0.0.0/8", "192.0.2.7", "2001:db8::/32")]
    response = metrics_from(address)
    assert response.status_code == 200
    assert b"django_http_requests_before_middlewares_total" in response.content


@pytest.mark.parametrize("address", ["203.0.113.9", "192.0.2.8", "127.0.0.1", ""])
def test_metrics_are_refused_elsewhere_with_403_plain_text(address, settings, db):
    settings.PUOMEMO_METRICS_ALLOWED_IPS = [ip_network(n) for n in ("10.0.0.0/8", "192.0.2.7")]
    response = metrics_from(address)
    assert response.status_code == 403
    assert response["Content-Type"] == "text/plain"
    assert b"django_http" not in response.content


def settings_with(**env) -> subprocess.CompletedProcess:
    """Import the settings in a fresh interpreter with these environment variables."""
    return subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.PUOMEMO_METRICS_ALLOWED_IPS)"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "puomemo.settings", "DEBUG": "1", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_metrics_allowed_ips_are_read_from_the_environment():
    read = settings_with(PUOMEMO_METRICS_ALLOWED_IPS="127.0.0.1, 10.0.0.0/8")
    assert read.returncode == 0, read.stderr
    assert "IPv4Network('127.0.0.1/32'), IPv4Network('10.0.0.0/8')" in read.stdout
    refused = settings_with(PUOMEMO_METRICS_ALLOWED_IPS="10.0.0.0/33")
    assert refused.returncode != 0 and "PUOMEMO_METRICS_ALLOWED_IPS" in refused.stderr


@pytest.mark.parametrize("path", ["/api/v4/auth/token/", "/api/v4/memories/"])
def test_json_nested_too_deeply_is_a_400_not_a_500(db, make_user, client_for, path):
    body = "[" * 5000 + "]" * 5000
    response = client_for(make_user()).post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": "JSON parse error - nested too deeply"}


@debug_on_and_off
def test_an_error_response_is_logged_once(debug):
    # In a fresh interpreter: the logging config is the one the settings give, with DEBUG on or off.
    script = (
        "import django; django.setup(); from django.test import Client; "
        "print(Client(HTTP_HOST='localhost').get('/api/v4/memories/').status_code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "puomemo.settings",
            "DEBUG": str(int(debug)),
            "SECRET_KEY": "x" * 50,
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "401"
    assert result.stderr.count("Unauthorized: /api/v4/memories/") == 1
