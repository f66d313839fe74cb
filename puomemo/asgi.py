"""ASGI entry point: HTTP through Django, /ws through the real-time layer."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "puomemo.settings")

from puomemo.http_handler import get_asgi_application  # Django's, with one thread hop a request

django_asgi_app = get_asgi_application()

from puomemo import http_limits  # noqa: E402
from puomemo.draining import close_when_draining  # noqa: E402
from puomemo.patches import PatchError  # noqa: E402
from realtime import daphne  # noqa: E402  (needs Django set up first)
from realtime.routing import ProtocolRouter, websocket_application  # noqa: E402

try:
    daphne.install()
    http_limits.install()
except PatchError as error:  # a library version the patches were not written for: one line, no traceback
    raise SystemExit(f"puomemo: {error}") from None


application = ProtocolRouter({"http": close_when_draining(django_asgi_app), "websocket": websocket_application()})
