from django.apps import AppConfig


class MemoriesConfig(AppConfig):
    name = "memories"

    def ready(self) -> None:
        from memories import receivers  # noqa: F401  (connects the embedding queue to Memory saves)
