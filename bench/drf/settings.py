"""PUO Memo's settings with the bare DRF endpoint's app and URLs added: the same server stack and database."""

from puomemo.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "bench.drf"]  # noqa: F405
ROOT_URLCONF = "bench.drf.urls"
