from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.api import ApiKeyDetailApi, ApiKeyListApi, CheckedTokenRefreshView, TokenObtainView
from memories.api import MemoryDetailApi, MemoryListApi, MemoryRestoreApi, MemorySearchApi, MemoryTrashApi
from puomemo.metrics import metrics
from puomemo.paths import either_slash
from realtime.api import EventListApi, WebSocketStatusApi, WebSocketTicketApi
from realtime.log import stream_position

# Every REST path answers with and without its trailing slash, for every method (APPEND_SLASH
# redirects only GET and HEAD). The first form is the one the OpenAPI schema lists.
api_v4 = [
    *either_slash("auth/token/", TokenObtainView.as_view(), name="token-obtain"),
    *either_slash("auth/token/refresh/", CheckedTokenRefreshView.as_view(), name="token-refresh"),
    *either_slash("api-keys/", ApiKeyListApi.as_view(), name="api-key-list"),
    *either_slash("api-keys/<int:pk>/", ApiKeyDetailApi.as_view(), name="api-key-detail"),
    *either_slash("memories/", MemoryListApi.as_view(stream_position=stream_position), name="memory-list"),
    # Before the detail route, which would otherwise not match "search/" and answer 404.
    *either_slash("memories/search", MemorySearchApi.as_view(), name="memory-search"),
    *either_slash("memories/trash/", MemoryTrashApi.as_view(), name="memory-trash"),
    *either_slash("memories/<uuid:pk>/restore/", MemoryRestoreApi.as_view(), name="memory-restore"),
    *either_slash("memories/<uuid:pk>/", MemoryDetailApi.as_view(), name="memory-detail"),
    *either_slash("ws/status", WebSocketStatusApi.as_view(), name="ws-status"),
    *either_slash("events", EventListApi.as_view(), name="event-list"),
    *either_slash("ws/ticket", WebSocketTicketApi.as_view(), name="ws-ticket"),
    *either_slash("schema/", SpectacularAPIView.as_view(), name="schema"),
    *either_slash("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    # Staff change their own password on the web page, where a wrong current password counts as a failed login.
    path("admin/password_change/", RedirectView.as_view(pattern_name="web:password_change")),
    path("admin/", admin.site.urls),
    # Asked for by browsers on pages without an icon of their own (Django admin's).
    path("favicon.ico", RedirectView.as_view(url=static("web/icon.svg"))),
    path("api/v4/", include(api_v4)),
    path("metrics", metrics, name="prometheus-django-metrics"),
    path("", include("web.urls")),
]
