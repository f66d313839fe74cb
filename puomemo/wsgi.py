"""WSGI entry point: REST and admin only; /ws needs the ASGI app."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "puomemo.settings")

application = get_wsgi_application()
