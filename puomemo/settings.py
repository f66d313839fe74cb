"""Settings for PUO Memo, read from the environment and `.env` (see .env.example, docs/configuration.md)."""

import os
import tempfile
import warnings
from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from puomemo.startup import load_env_file

# `.env` first, so that everything below sees it; variables set in the environment win.
load_env_file()

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    """Read a yes/no environment variable."""
    raw = os.environ.get(name, "").strip()  # empty, as a copied .env.example leaves some: the default
    return raw.lower() in {"1", "true", "yes", "on"} if raw else default


def env_int(name: str, default: int) -> int:
    """Read a positive integer environment variable, failing fast on nonsense."""
    return _env_positive(name, default, int)


def env_float(name: str, default: float) -> float:
    """Read a positive number environment variable, failing fast on nonsense."""
    return _env_positive(name, default, float)


def _env_positive(name: str, default: int | float, kind: type) -> int | float:
    raw = os.environ.get(name, "")
    try:
        value = kind(raw) if raw.strip() else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a positive {kind.__name__}, got {raw!r}") from None
    if value <= 0:
        raise ImproperlyConfigured(f"{name} must be positive, got {value}")
    return value


def env_list(name: str, default: str) -> list[str]:
    """Read a comma-separated environment variable."""
    return [item.strip() for item in (os.environ.get(name, "").strip() or default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG")

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (in the environment or .env; DEBUG=1 for development)."
        )
    warnings.warn("SECRET_KEY is not set: using an insecure development key.", stacklevel=1)
    SECRET_KEY = "django-insecure-puomemo-development-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's assets, served locally (no CDN)
    "django_prometheus",
    "channels",
    "accounts",
    "memories",
    "realtime",
    "web",
    # Last: the project package wires the apps together (serve, demo).
    "puomemo",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Inside SecurityMiddleware, so its headers reach the JSON errors too.
    "puomemo.errors.api_errors_as_json",
    "puomemo.errors.AppendSlashMiddleware",  # Django's CommonMiddleware, without DEBUG's 500 for a POST
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "puomemo.urls"

# Django's own rules for new passwords (the password change page, createsuperuser, admin).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in [
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    ]
]

# Every password login counts its failures (accounts/login_throttle.py).
AUTHENTICATION_BACKENDS = ["accounts.login_throttle.ThrottledModelBackend"]
# Failed logins within the lockout window: this many for one username from one address, or this
# many from one address in all, lock further tries from there until the window's first failure ages out.
PUOMEMO_LOGIN_FAILURES_PER_USER = env_int("PUOMEMO_LOGIN_FAILURES_PER_USER", 5)
PUOMEMO_LOGIN_FAILURES_PER_ADDRESS = env_int("PUOMEMO_LOGIN_FAILURES_PER_ADDRESS", 30)
PUOMEMO_LOGIN_LOCKOUT_SECONDS = env_int("PUOMEMO_LOGIN_LOCKOUT_SECONDS", 900)

# The web UI (web/): Django's own login and (POST) logout views.
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "web:login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "puomemo.wsgi.application"
ASGI_APPLICATION = "puomemo.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=0,
    )
}

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The server and its embedding worker thread write at the same time: wait for
    # the lock, and take it when a transaction begins, so that two transactions
    # that read first never deadlock upgrading to write.
    DATABASES["default"].setdefault("OPTIONS", {}).update(timeout=20, transaction_mode="IMMEDIATE")
    # A file, not memory, so that tests can run a worker process on the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"puomemo_test_{os.getpid()}.sqlite3")}
else:
    # One test database per test run, so that two runs on one machine do not share it.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Keep connections open between requests: opening one costs a write a few milliseconds.
    # A process's requests, consumers, worker and publisher share at most this many.
    PUOMEMO_DB_POOL_SIZE = env_int("PUOMEMO_DB_POOL_SIZE", 10)
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, PUOMEMO_DB_POOL_SIZE),
        "max_size": PUOMEMO_DB_POOL_SIZE,
        "timeout": 10,  # seconds a request waits for a free connection before it fails
    }
    # Parameters sent apart from the statement, not quoted into it by psycopg in Python: quoting
    # a create's event JSON was 7% of its samples (docs/performance.md).
    DATABASES["default"]["OPTIONS"].setdefault("server_side_binding", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The JS client is one ES module with no build step: the web UI loads the same file that clients/js ships.
STATICFILES_DIRS = [("puomemo", BASE_DIR / "clients" / "js")]

# --- Real-time layer -------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "").strip()


def _sentinels(raw: str) -> list[tuple[str, int]]:
    """REDIS_SENTINELS as (host, port) pairs: `host:port,host:port` (an IPv6 host in brackets)."""
    found = []
    for item in (part.strip() for part in raw.split(",")):
        host, _, port = item.rpartition(":")
        if not item or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(f"REDIS_SENTINELS must be host:port[,host:port…], got {raw!r}")
        found.append((host.strip("[]"), int(port)))
    return found


# Redis through Sentinel (docs/deployment.md): the sentinels to ask, and the name of the master they watch.
REDIS_SENTINELS = _sentinels(os.environ["REDIS_SENTINELS"]) if os.environ.get("REDIS_SENTINELS", "").strip() else []
REDIS_SENTINEL_MASTER = os.environ.get("REDIS_SENTINEL_MASTER", "").strip()
if bool(REDIS_SENTINELS) != bool(REDIS_SENTINEL_MASTER):
    raise ImproperlyConfigured("REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together: set both or neither.")
if REDIS_SENTINELS and REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL and REDIS_SENTINELS both name the Redis: set one of them.")
# Pub/sub shards: the channel layer spreads the tenants' groups over these; everything else stays on the main Redis.
REDIS_PUBSUB_URLS = env_list("REDIS_PUBSUB_URLS", "")
for _url in REDIS_PUBSUB_URLS:
    if not _url.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_PUBSUB_URLS must be redis:// URLs, got {_url!r}")
if REDIS_PUBSUB_URLS and not (REDIS_URL or REDIS_SENTINELS):
    raise ImproperlyConfigured("REDIS_PUBSUB_URLS needs REDIS_URL or REDIS_SENTINELS for the connection registry.")
# Whether the real-time layer runs on Redis (several processes) rather than the embedded default (one).
REDIS_ENABLED = bool(REDIS_URL or REDIS_SENTINELS)

# Every Redis client's options. Pooled connections go stale when Redis restarts:
# check them before use, and retry a command once reconnected instead of failing it.
REDIS_OPTIONS = {
    "health_check_interval": 5,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "socket_keepalive": True,
    "retry_on_error": [OSError],
}
# The connections to the sentinels themselves: their timeouts, so that a dead sentinel is passed over.
REDIS_SENTINEL_OPTIONS = {key: REDIS_OPTIONS[key] for key in ("socket_connect_timeout", "socket_timeout")}
# Connections of each of a process's registry and ticket clients (one sync, one per event loop): a burst of
# connects waits up to the timeout for a free one rather than failing (realtime/redis_clients.py).
PUOMEMO_REDIS_POOL_SIZE = env_int("PUOMEMO_REDIS_POOL_SIZE", 20)
PUOMEMO_REDIS_POOL_TIMEOUT_SECONDS = env_float("PUOMEMO_REDIS_POOL_TIMEOUT_SECONDS", 5.0)
# How long a request (ws/status, ws/ticket) waits for a Redis answer before it gives up with a 503.
PUOMEMO_REDIS_REQUEST_TIMEOUT_SECONDS = env_float("PUOMEMO_REDIS_REQUEST_TIMEOUT_SECONDS", 1.0)

if REDIS_ENABLED:
    if REDIS_SENTINELS:
        _main_host = {
            "sentinels": REDIS_SENTINELS,
            "master_name": REDIS_SENTINEL_MASTER,
            "sentinel_kwargs": REDIS_SENTINEL_OPTIONS,
            **REDIS_OPTIONS,
        }
    else:
        _main_host = {"address": REDIS_URL, **REDIS_OPTIONS}
    # The pub/sub layer publishes once per group send and fans out inside each
    # process; it has no 5-second BZPOPMIN loop (docs/architecture.md).
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis pub/sub, with a transaction's events sent in one round trip.
            "BACKEND": "realtime.layers.PipelinedPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": url, **REDIS_OPTIONS} for url in REDIS_PUBSUB_URLS] or [_main_host]},
        }
    }
else:
    # One process only: events written by other processes never arrive.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 10_000},
        }
    }

PUOMEMO_WS_MAX_CONNECTIONS_PER_USER = env_int("PUOMEMO_WS_MAX_CONNECTIONS_PER_USER", 5)
PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT = env_int("PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT", 100)
PUOMEMO_WS_MAX_MESSAGE_BYTES = env_int("PUOMEMO_WS_MAX_MESSAGE_BYTES", 1_048_576)
PUOMEMO_WS_RATE_LIMIT_PER_MINUTE = env_int("PUOMEMO_WS_RATE_LIMIT_PER_MINUTE", 100)
PUOMEMO_WS_HEARTBEAT_SECONDS = env_int("PUOMEMO_WS_HEARTBEAT_SECONDS", 30)
PUOMEMO_WS_IDLE_TIMEOUT_SECONDS = env_int("PUOMEMO_WS_IDLE_TIMEOUT_SECONDS", 300)
PUOMEMO_WS_INVALID_LIMIT_PER_MINUTE = env_int("PUOMEMO_WS_INVALID_LIMIT_PER_MINUTE", 5)
# How long a ticket from POST /api/v4/ws/ticket may wait before /ws?ticket= redeems it (once).
PUOMEMO_WS_TICKET_TTL_SECONDS = env_int("PUOMEMO_WS_TICKET_TTL_SECONDS", 30)
PUOMEMO_WS_OUTBOUND_QUEUE = env_int("PUOMEMO_WS_OUTBOUND_QUEUE", 1000)
# A resume streams the log in pages of at most this many events and bytes of frames, at the pace the
# client reads; a resumer that reads nothing for PUOMEMO_WS_STALL_SECONDS is dropped.
PUOMEMO_WS_REPLAY_PAGE_EVENTS = env_int("PUOMEMO_WS_REPLAY_PAGE_EVENTS", 100)
PUOMEMO_WS_REPLAY_PAGE_BYTES = env_int("PUOMEMO_WS_REPLAY_PAGE_BYTES", 256 * 1024)
PUOMEMO_WS_STALL_SECONDS = env_float("PUOMEMO_WS_STALL_SECONDS", 10)
# A resume from further back than this many events gets resync_required ("too_many") instead.
PUOMEMO_WS_RESUME_MAX_EVENTS = env_int("PUOMEMO_WS_RESUME_MAX_EVENTS", 1000)
# The admission bound (a reconnect storm): a process sets up at most this many new connections at once;
# up to PUOMEMO_WS_ADMISSION_QUEUE more wait for a turn, each at most PUOMEMO_WS_ADMISSION_WAIT_SECONDS;
# past either, the connection is closed with 1013 (try again later) and the client backs off.
PUOMEMO_WS_ADMISSION_CONCURRENCY = env_int("PUOMEMO_WS_ADMISSION_CONCURRENCY", 64)
PUOMEMO_WS_ADMISSION_QUEUE = env_int("PUOMEMO_WS_ADMISSION_QUEUE", 300)
PUOMEMO_WS_ADMISSION_WAIT_SECONDS = env_float("PUOMEMO_WS_ADMISSION_WAIT_SECONDS", 5)
# Each process re-stamps its connections in Redis this often; an entry not re-stamped for three
# times as long (its process died) stops counting, and the tenant is told its user left.
PUOMEMO_WS_REGISTRY_REFRESH_SECONDS = env_float("PUOMEMO_WS_REGISTRY_REFRESH_SECONDS", 10)
# A connection relays at most one typing indicator a memory in this interval (the clients send no more often).
PUOMEMO_WS_TYPING_INTERVAL_SECONDS = env_float("PUOMEMO_WS_TYPING_INTERVAL_SECONDS", 2.0)
# REST remembers a bearer token's principal this long (at most), per process; any access change empties
# it, at once in the process that made it and within PUOMEMO_AUTH_CACHE_CHECK_SECONDS everywhere else.
PUOMEMO_AUTH_CACHE_SECONDS = env_float("PUOMEMO_AUTH_CACHE_SECONDS", 60)
PUOMEMO_AUTH_CACHE_CHECK_SECONDS = env_float("PUOMEMO_AUTH_CACHE_CHECK_SECONDS", 1.0)
PUOMEMO_AUTH_CACHE_MAX_ENTRIES = env_int("PUOMEMO_AUTH_CACHE_MAX_ENTRIES", 10_000)
# The event log: how often each process looks for events it did not get published
# (lost, or written by a process on another channel layer), and what it keeps.
PUOMEMO_EVENT_LOG_POLL_SECONDS = env_float("PUOMEMO_EVENT_LOG_POLL_SECONDS", 1.0)
PUOMEMO_EVENT_LOG_MIN_EVENTS = env_int("PUOMEMO_EVENT_LOG_MIN_EVENTS", 10_000)
PUOMEMO_EVENT_LOG_MIN_HOURS = env_int("PUOMEMO_EVENT_LOG_MIN_HOURS", 24)
# Deleted memories stay in the trash, restorable, this many days; then they are purged with the event log.
PUOMEMO_TRASH_RETENTION_DAYS = env_int("PUOMEMO_TRASH_RETENTION_DAYS", 30)
# Open connections follow access changes at once; this re-check catches a change whose event was lost.
PUOMEMO_WS_REVALIDATE_SECONDS = env_int("PUOMEMO_WS_REVALIDATE_SECONDS", 30)
PUOMEMO_WS_MAX_BUFFERED_BYTES = env_int("PUOMEMO_WS_MAX_BUFFERED_BYTES", 1_048_576)
# The same summed over a process's connections; past it, the ones with most waiting are dropped first.
PUOMEMO_WS_MAX_BUFFERED_BYTES_TOTAL = env_int("PUOMEMO_WS_MAX_BUFFERED_BYTES_TOTAL", 64 * 1_048_576)
# Time a client has to send a request's line and headers (slowloris); nginx's client_header_timeout is in front.
PUOMEMO_HTTP_HEADER_TIMEOUT_SECONDS = env_int("PUOMEMO_HTTP_HEADER_TIMEOUT_SECONDS", 10)
# Browser origins allowed to open /ws; defaults to the allowed hosts.
PUOMEMO_WS_ALLOWED_ORIGINS = env_list("PUOMEMO_WS_ALLOWED_ORIGINS", ",".join(ALLOWED_HOSTS))
# permessage-deflate (docs/protocol.md, "Encodings and compression"): offered by the client, accepted unless off here.
PUOMEMO_WS_COMPRESSION = env_bool("PUOMEMO_WS_COMPRESSION", True)
PUOMEMO_WS_COMPRESSION_LEVEL = env_int("PUOMEMO_WS_COMPRESSION_LEVEL", 6)
# Each message compressed on its own: one compression per event for all connections, no compressor kept between.
PUOMEMO_WS_COMPRESSION_NO_CONTEXT_TAKEOVER = env_bool("PUOMEMO_WS_COMPRESSION_NO_CONTEXT_TAKEOVER", True)
# Messages smaller than this go uncompressed.
PUOMEMO_WS_COMPRESSION_MIN_BYTES = env_int("PUOMEMO_WS_COMPRESSION_MIN_BYTES", 256)
# Custom events (realtime/custom.py): largest payload as compact JSON, publishes a connection may make a minute,
# and whether guests may publish them.
PUOMEMO_CUSTOM_MAX_PAYLOAD_BYTES = env_int("PUOMEMO_CUSTOM_MAX_PAYLOAD_BYTES", 16_384)
PUOMEMO_CUSTOM_RATE_PER_MINUTE = env_int("PUOMEMO_CUSTOM_RATE_PER_MINUTE", 60)
PUOMEMO_CUSTOM_ALLOW_GUESTS = env_bool("PUOMEMO_CUSTOM_ALLOW_GUESTS")

# --- REST API --------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerAuthentication",
        # The web UI's page calls the API (polling /events) with its session cookie; writes need the CSRF token.
        "web.authentication.SessionPrincipalAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "puomemo.errors.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "puomemo.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=30),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=1),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "PUO Memo API",
    "DESCRIPTION": "Multi-tenant memories with live sync over /ws.",
    "VERSION": "4.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Every REST path answers with and without its trailing slash; the schema lists one form (puomemo/paths.py).
    "PREPROCESSING_HOOKS": ["puomemo.paths.drop_other_forms"],
}

# --- Metrics -----------------------------------------------------------------

# Who may read /metrics: client addresses or CIDR networks, by REMOTE_ADDR; empty
# lets anyone. Parsed here so that a typo stops the server from starting.
try:
    PUOMEMO_METRICS_ALLOWED_IPS = [
        ip_network(item, strict=False) for item in env_list("PUOMEMO_METRICS_ALLOWED_IPS", "")
    ]
except ValueError as error:
    raise ImproperlyConfigured(f"PUOMEMO_METRICS_ALLOWED_IPS: {error}") from None

LOG_LEVEL = (os.environ.get("LOG_LEVEL", "").strip() or "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Django's default config gives "django" a console handler of its own under DEBUG: every line twice.
    # Never below INFO: django.db.backends at DEBUG logs every SQL statement with its parameters.
    "loggers": {"django": {"handlers": [], "level": "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL}},
}
