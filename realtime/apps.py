from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Real-time sync"

    def ready(self) -> None:
        from realtime import receivers  # noqa: F401  (connects the signal receivers)
