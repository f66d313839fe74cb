from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.api import ApiKeyDetailApi, ApiKeyListApi, CheckedTokenRefreshView, TokenObtainView
from memories.api import MemoryDetailApi, MemoryListApi, MemorySearchApi
from puomemo.metrics import metrics
from realtime.api import EventListApi, WebSocketStatusApi, WebSocketTicketApi
from realtime.log import current_seq

api_v4 = [
    path("auth/token/", TokenObtainView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", CheckedTokenRefreshView.as_view(), name="token-refresh"),
    path("api-keys/", ApiKeyListApi.as_view(), name="api-key-list"),
    path("api-keys/<int:pk>/", ApiKeyDetailApi.as_view(), name="api-key-detail"),
    path("memories/", MemoryListApi.as_view(stream_position=current_seq), name="memory-list"),
    path("memories/search", MemorySearchApi.as_view(), name="memory-search"),
    path("memories/<uuid:pk>/", MemoryDetailApi.as_view(), name="memory-detail"),
    path("ws/status", WebSocketStatusApi.as_view(), name="ws-status"),
    path("events", EventListApi.as_view(), name="event-list"),
    path("ws/ticket", WebSocketTicketApi.as_view(), name="ws-ticket"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    # Staff change their own password on the web page, where a wrong current password counts as a failed login.
    path("admin/password_change/", RedirectView.as_view(pattern_name="web:password_change")),
    path("admin/", admin.site.urls),
    path("api/v4/", include(api_v4)),
    path("metrics", metrics, name="prometheus-django-metrics"),
    path("", include("web.urls")),
]
