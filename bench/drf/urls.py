"""PUO Memo's URLs plus the bare create endpoint (the benchmark's settings only)."""

from django.urls import path

from bench.drf.views import NoteCreateApi
from puomemo.urls import urlpatterns as product

urlpatterns = [path("bench/notes/", NoteCreateApi.as_view()), *product]
