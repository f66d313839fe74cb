from django.contrib import admin

from accounts.principal import Actor
from memories.models import Memory


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ["__str__", "tenant", "owner", "visibility", "embedding_status", "updated_at"]
    list_filter = ["tenant", "visibility", "embedding_status"]
    search_fields = ["title", "content"]
    readonly_fields = ["id", "created_at", "updated_at", "embedding_status", "embedding_model", "embedded_at"]
    raw_id_fields = ["owner"]

    def save_model(self, request, obj, form, change):
        obj.actor = Actor.of(request.user)
        super().save_model(request, obj, form, change)

    def delete_model(self, request, obj):
        obj.actor = Actor.of(request.user)
        super().delete_model(request, obj)
