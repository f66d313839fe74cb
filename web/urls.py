from django.contrib.auth.views import LogoutView, PasswordChangeDoneView
from django.urls import path

from web import views

app_name = "web"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.Login.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),  # POST only (Django 5)
    path("password/", views.PasswordChange.as_view(), name="password_change"),
    path(
        "password/done/",
        PasswordChangeDoneView.as_view(template_name="web/password_change_done.html"),
        name="password_change_done",
    ),
    path("memories/new/", views.create, name="create"),
    path("memories/<uuid:pk>/edit/", views.edit, name="edit"),
    path("memories/<uuid:pk>/delete/", views.delete, name="delete"),
    path("memories/<uuid:pk>/restore/", views.restore, name="restore"),
    path("memories/<uuid:pk>/", views.memory, name="memory"),
    path("trash/", views.trash, name="trash"),
    path("memories/meta.json", views.memory_meta, name="meta"),
    path("snapshot.json", views.snapshot_json, name="snapshot"),
    path("search/", views.search, name="search"),
    # An ordinary page under HTTP: the WebSocket route is exactly /ws, and only for WebSocket requests.
    path("ws/test-client/", views.test_client, name="test-client"),
]
