"""ASGI entry point: HTTP through Django, /ws through the real-time layer."""

import os

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "puomemo.settings")
django_asgi_app = get_asgi_application()

from puomemo import http_limits  # noqa: E402
from puomemo.patches import PatchError  # noqa: E402
from realtime import daphne  # noqa: E402  (needs Django set up first)
from realtime.routing import websocket_application  # noqa: E402

try:
    daphne.install()
    http_limits.install()
except PatchError as error:  # a library version the patches were not written for: one line, no traceback
    raise SystemExit(f"puomemo: {error}") from None

application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_application()})
