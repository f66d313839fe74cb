"""The benchmark's baseline: a bare DRF create endpoint served by the same `serve`, kept out of the product's URLs.

Served with DJANGO_SETTINGS_MODULE=bench.drf.settings: PUO Memo's settings and URLs plus POST /bench/notes/.
"""
