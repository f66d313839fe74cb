from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Tenants and access"

    def ready(self) -> None:
        from accounts import auth_cache, schema  # noqa: F401  (the cache's receivers; the OpenAPI auth scheme)
