"""Set-up without traps: `.env` is read, a missing setting or database is one line, the first admin on Docker."""

import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from puomemo import startup

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = "postgres://postgres@127.0.0.1:5432"


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Run manage.py as a shell would, with only the settings given (no DEBUG, SECRET_KEY or database from outside)."""
    outside = {"DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
    clean = {key: value for key, value in os.environ.items() if key not in outside}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env={**clean, "PUOMEMO_ENV_FILE": os.devnull, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    """stderr without the development key's warning (two lines Python's warnings module prints under DEBUG=1)."""
    lines = result.stderr.splitlines()
    return [line for line in lines if "insecure development key" not in line]


def test_env_file_is_read_and_the_environment_wins(tmp_path):
    env_file = tmp_path / "puomemo.env"
    env_file.write_text("DEBUG=1\nPUOMEMO_WS_RATE_LIMIT_PER_MINUTE=77  # a comment\nLOG_LEVEL=warning\n")
    show = "from django.conf import settings as s; print(s.DEBUG, s.PUOMEMO_WS_RATE_LIMIT_PER_MINUTE, s.LOG_LEVEL)"
    read = manage("shell", "-v", "0", "-c", show, PUOMEMO_ENV_FILE=str(env_file))
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == ["True", "77", "WARNING"]
    overridden = manage(
        "shell", "-v", "0", "-c", show, PUOMEMO_ENV_FILE=str(env_file), PUOMEMO_WS_RATE_LIMIT_PER_MINUTE="88"
    )
    assert overridden.stdout.split() == ["True", "88", "WARNING"]


def test_a_copy_of_env_example_changes_nothing_but_debug():
    names = sorted(
        name
        for name in {line.split("=")[0] for line in (ROOT / ".env.example").read_text().splitlines()}
        if name and not name.startswith("#") and name not in {"DEBUG", "SECRET_KEY"}
    )
    shown = [*names, "CHANNEL_LAYERS"]
    show = (
        "import json; from django.conf import settings as s; "
        f"values = {{n: str(getattr(s, n, None)) for n in {shown!r}}}; "
        "print(json.dumps(values | {'db': s.DATABASES['default']['NAME']}))"
    )
    copied = manage("shell", "-v", "0", "-c", show, PUOMEMO_ENV_FILE=str(ROOT / ".env.example"), DEBUG="1")
    without = manage("shell", "-v", "0", "-c", show, DEBUG="1")
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout == without.stdout
    assert "PUOMEMO_WS_ALLOWED_ORIGINS" in names and "REDIS_URL" in names


def test_env_file_is_dot_env_at_the_root_by_default(monkeypatch):
    monkeypatch.delenv("PUOMEMO_ENV_FILE", raising=False)
    assert startup.env_file() == ROOT / ".env"
    assert ROOT.joinpath(".gitignore").read_text().splitlines().count(".env") == 1  # never committed


def test_a_command_without_secret_key_says_so_in_one_line():
    result = manage("create_tenant", "acme")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "manage.py: SECRET_KEY must be set when DEBUG is off (in the environment or .env; DEBUG=1 for development)."
    ]
    assert result.stdout == ""


def test_a_bad_setting_is_one_line_too():
    result = manage("create_tenant", "acme", DEBUG="1", PUOMEMO_WS_MAX_CONNECTIONS_PER_USER="many")
    assert result.returncode == 1
    assert stderr_lines(result) == ["manage.py: PUOMEMO_WS_MAX_CONNECTIONS_PER_USER must be a positive int, got 'many'"]


def test_traceback_flag_still_shows_the_traceback():
    result = manage("create_tenant", "acme", "--traceback")
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr


@pytest.fixture
def new_database_url():
    """A PostgreSQL URL on the local server whose database does not exist yet; dropped afterwards."""
    try:
        psycopg.connect(f"{POSTGRES}/postgres", connect_timeout=3).close()
    except psycopg.OperationalError as error:
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432: {error}")
    name = f"puomemo_missing_{secrets.token_hex(6)}"
    yield name, f"{POSTGRES}/{name}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_missing_postgresql_database_is_named_in_one_line_then_migrate_creates_it(new_database_url):
    name, url = new_database_url
    how = (
        f"manage.py: PostgreSQL database '{name}' (DATABASE_URL) does not exist: create it with"
        f" `createdb -h 127.0.0.1 -p 5432 -U postgres {name}` or run `manage.py migrate`, which creates it."
    )
    for command in (["create_tenant", "acme"], ["serve", "--port", "0"]):
        refused = manage(*command, DEBUG="1", DATABASE_URL=url)
        assert refused.returncode == 1
        assert stderr_lines(refused) == [how]

    migrated = manage("migrate", "--noinput", DEBUG="1", DATABASE_URL=url)
    assert migrated.returncode == 0, migrated.stderr
    assert stderr_lines(migrated) == [f"Created PostgreSQL database '{name}' (DATABASE_URL)."]
    assert "Applying accounts.0001_initial... OK" in migrated.stdout
    again = manage("migrate", "--noinput", DEBUG="1", DATABASE_URL=url)
    assert again.returncode == 0 and stderr_lines(again) == []
    created = manage("create_tenant", "acme", DEBUG="1", DATABASE_URL=url)
    assert created.returncode == 0 and "Created tenant acme" in created.stdout


def test_an_unreachable_postgresql_is_one_line():
    result = manage("create_tenant", "acme", DEBUG="1", DATABASE_URL="postgres://postgres@127.0.0.1:1/puomemo")
    assert result.returncode == 1
    [line] = stderr_lines(result)
    assert line.startswith("manage.py: cannot connect to PostgreSQL at 127.0.0.1:1 (DATABASE_URL): ")


def docker_first_admin_commands() -> list[list[str]]:
    """The manage.py commands docs/deployment.md gives for the first admin on Docker, as argument lists."""
    prefix = "$ docker compose -f docker/compose.yaml run --rm"
    commands = []
    for line in (ROOT / "docs" / "deployment.md").read_text().splitlines():
        if line.startswith(prefix) and " python manage.py " in line:
            words = shlex.split(line.removeprefix("$ "))
            commands.append(words[words.index("manage.py") + 1 :])
    return commands


def test_the_docker_first_admin_commands_work_on_the_local_stack(new_database_url):
    _, url = new_database_url
    commands = docker_first_admin_commands()
    assert [command[0] for command in commands] == ["create_tenant", "create_user", "createsuperuser"]
    # As in docker/compose.yaml: DEBUG=0 with a secret key; the compose file's migrate service first.
    production = {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "DATABASE_URL": url}
    assert manage("migrate", "--noinput", **production).returncode == 0
    passwords = {"ADMIN_PASSWORD": "first-admin-pw-2026", "DJANGO_SUPERUSER_PASSWORD": "operator-pw-2026"}
    for command in commands:
        args = [re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: passwords[m[1] or m[2]], arg) for arg in command]
        result = manage(*args, **production, **passwords)
        assert result.returncode == 0, (command, result.stderr)
    check = (
        "from django.contrib.auth import authenticate; from accounts.models import Membership;"
        "admin = authenticate(username='admin', password='first-admin-pw-2026');"
        "operator = authenticate(username='operator', password='operator-pw-2026');"
        "print(Membership.objects.get(user=admin).role, Membership.objects.get(user=admin).tenant.slug,"
        " operator.is_superuser)"
    )
    shown = manage("shell", "-v", "0", "-c", check, **production)
    assert shown.stdout.split() == ["admin", "acme", "True"], shown.stderr
