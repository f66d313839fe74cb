"""Before Django runs: `.env` read, a missing PostgreSQL database created or named, set-up errors in one line."""

# Used by manage.py and puomemo/settings.py, so by daphne, WSGI and pytest too (docs/configuration.md).

import os
import sys
from collections.abc import Callable
from pathlib import Path

from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent

# Commands that never open the database, so they run without one (the Docker build's collectstatic).
NO_DATABASE_COMMANDS = frozenset(
    {"check", "collectstatic", "compilemessages", "diffsettings", "help", "makemigrations", "version", "test"}
)


# Database OPTIONS that Django's PostgreSQL backend reads itself; the rest go to psycopg.connect().
DJANGO_ONLY_OPTIONS = frozenset({"pool", "isolation_level", "server_side_binding", "assume_role", "cursor_factory"})


class SetupError(Exception):
    """A problem with the settings or the environment, told in one line."""


def env_file() -> Path:
    """The file of settings read at start: `.env` at the project's root, or the one PUOMEMO_ENV_FILE names."""
    return Path(os.environ.get("PUOMEMO_ENV_FILE") or BASE_DIR / ".env")


def load_env_file() -> Path | None:
    """Read env_file() into the environment, if it exists; variables already set win. The file read, or None."""
    path = env_file()
    if not path.is_file():
        return None
    load_dotenv(path, override=False)
    return path


def _connection_kwargs(database: dict, name: str) -> dict:
    """psycopg.connect() arguments for Django's database settings, for the database `name`."""
    options = {key: value for key, value in database.get("OPTIONS", {}).items() if key not in DJANGO_ONLY_OPTIONS}
    kwargs = {
        "dbname": name,
        "user": database.get("USER") or None,
        "password": database.get("PASSWORD") or None,
        "host": database.get("HOST") or None,
        "port": str(database["PORT"]) if database.get("PORT") else None,
        "connect_timeout": 5,
        **options,
    }
    return {key: value for key, value in kwargs.items() if value is not None}


def createdb_command(database: dict) -> str:
    """The shell command that creates the configured PostgreSQL database."""
    parts = ["createdb"]
    if database.get("HOST"):
        parts += ["-h", database["HOST"]]
    if database.get("PORT"):
        parts += ["-p", str(database["PORT"])]
    if database.get("USER"):
        parts += ["-U", database["USER"]]
    return " ".join([*parts, database["NAME"]])


def _missing_database(error: Exception) -> bool:
    return getattr(error, "sqlstate", None) == "3D000" or "does not exist" in str(error)


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def ensure_database(database: dict, *, create: bool, say: Callable[[str], None]) -> None:
    """Check that the PostgreSQL database exists; create it if `create`, else raise SetupError saying how."""
    if database.get("ENGINE") != "django.db.backends.postgresql":
        return
    import psycopg
    from psycopg import sql

    name = database["NAME"]
    try:
        psycopg.connect(**_connection_kwargs(database, name)).close()
        return
    except psycopg.OperationalError as error:
        if not _missing_database(error):
            where = f"{database.get('HOST') or 'localhost'}:{database.get('PORT') or 5432}"
            raise SetupError(f"cannot connect to PostgreSQL at {where} (DATABASE_URL): {_first_line(error)}") from None
    how = f"create it with `{createdb_command(database)}` or run `manage.py migrate`, which creates it"
    if not create:
        raise SetupError(f"PostgreSQL database {name!r} (DATABASE_URL) does not exist: {how}.")
    try:
        with psycopg.connect(**_connection_kwargs(database, "postgres"), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as error:
        raise SetupError(
            f"PostgreSQL database {name!r} (DATABASE_URL) does not exist and could not be created"
            f" ({_first_line(error)}): create it with `{createdb_command(database)}`."
        ) from None
    say(f"Created PostgreSQL database {name!r} (DATABASE_URL).")


def _command(argv: list[str]) -> str | None:
    words = [word for word in argv[1:] if not word.startswith("-")]
    return words[0] if words else None


def run_management_command(argv: list[str]) -> int:
    """Run a manage.py command; a set-up error (settings, database, server patches) is one line on stderr, exit 1."""
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    from puomemo.patches import PatchError

    program = Path(argv[0]).name
    command = _command(argv)
    try:
        from django.conf import settings

        if command and command not in NO_DATABASE_COMMANDS:
            ensure_database(
                settings.DATABASES["default"],
                create=command == "migrate",
                say=lambda line: print(line, file=sys.stderr),
            )
        execute_from_command_line(argv)
    except (ImproperlyConfigured, SetupError, PatchError) as error:
        if "--traceback" in argv:
            raise
        print(f"{program}: {error}", file=sys.stderr)
        return 1
    return 0
