from types import SimpleNamespace

from django.contrib import admin

from memories.models import Memory


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ["__str__", "tenant", "owner", "visibility", "embedding_status", "updated_at"]
    list_filter = ["tenant", "visibility", "embedding_status"]
    search_fields = ["title", "content"]
    readonly_fields = ["id", "created_at", "updated_at", "embedding_status", "embedding_model", "embedded_at"]
    raw_id_fields = ["owner"]

    def save_model(self, request, obj, form, change):
        obj.actor = _actor(request)
        super().save_model(request, obj, form, change)

    def delete_model(self, request, obj):
        obj.actor = _actor(request)
        super().delete_model(request, obj)


def _actor(request) -> SimpleNamespace:
    user = request.user
    return SimpleNamespace(user_id=user.pk, user_name=user.get_full_name() or user.get_username())
