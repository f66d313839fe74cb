"""The bootstrap management commands, as scripts call them."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import Membership, Role, Tenant
from memories.models import Memory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_tenant_user_and_api_key():
    assert "Created tenant acme" in run("create_tenant", "acme", "--name", "Acme Inc")
    assert Tenant.objects.get(slug="acme").name == "Acme Inc"
    run("create_user", "ann", "--tenant", "acme", "--role", "admin", "--password", "pw-123456")
    membership = Membership.objects.get(user__username="ann")
    assert (membership.tenant.slug, membership.role) == ("acme", Role.ADMIN)
    key = run("create_api_key", "ann").strip().splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v4/memories/").status_code == 200


def test_command_errors_are_clear():
    with pytest.raises(CommandError, match="No tenant 'nowhere'"):
        run("create_user", "ann", "--tenant", "nowhere")
    with pytest.raises(CommandError, match="No user 'ghost'"):
        run("create_api_key", "ghost")
    with pytest.raises(CommandError):
        run("create_tenant", "Not A Slug!")
    run("create_tenant", "acme")
    run("create_user", "ann", "--tenant", "acme")
    with pytest.raises(CommandError, match="already exists"):
        run("create_user", "ann", "--tenant", "acme")


def test_demo_is_idempotent():
    first = run("demo")
    assert "created admin alice" in first and "password" in first
    counts = (Tenant.objects.count(), Membership.objects.count(), Memory.objects.count())
    second = run("demo")
    assert "created" not in second
    assert (Tenant.objects.count(), Membership.objects.count(), Memory.objects.count()) == counts
    roles = dict(Membership.objects.values_list("user__username", "role"))
    assert roles == {"alice": Role.ADMIN, "bob": Role.MEMBER, "carol": Role.GUEST}
    assert set(Memory.objects.values_list("visibility", flat=True)) == {"private", "team", "public"}


def _settings_import(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**clean, "DJANGO_SETTINGS_MODULE": "puomemo.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_settings_refuse_production_without_secret_key():
    refused = _settings_import(DEBUG="0")
    assert refused.returncode != 0
    assert "SECRET_KEY must be set" in refused.stderr
    assert _settings_import(DEBUG="0", SECRET_KEY="x" * 50).returncode == 0
    warned = _settings_import(DEBUG="1")
    assert warned.returncode == 0 and "insecure development key" in warned.stderr


def test_settings_reject_a_bad_limit():
    result = _settings_import(DEBUG="1", PUOMEMO_WS_MAX_CONNECTIONS_PER_USER="many")
    assert result.returncode != 0 and "PUOMEMO_WS_MAX_CONNECTIONS_PER_USER must be a positive int" in result.stderr
