from django.contrib import admin

from accounts.principal import Actor
from memories.models import Memory
from memories.services import memory_delete_by_staff, memory_save_by_staff


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ["__str__", "tenant", "owner", "visibility", "embedding_status", "updated_at"]
    list_filter = ["tenant", "visibility", "embedding_status"]
    search_fields = ["title", "content"]
    readonly_fields = ["id", "created_at", "updated_at", "embedding_status", "embedding_model", "embedded_at"]
    raw_id_fields = ["owner"]

    def save_model(self, request, obj, form, change):
        memory_save_by_staff(actor=Actor.of(request.user), memory=obj)

    def delete_model(self, request, obj):
        memory_delete_by_staff(actor=Actor.of(request.user), memory=obj)

    def delete_queryset(self, request, queryset):
        # One at a time through the service, so each delete's event names who deleted it.
        for memory in queryset:
            memory_delete_by_staff(actor=Actor.of(request.user), memory=memory)
