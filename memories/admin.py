from django.contrib import admin

from accounts.principal import Actor
from memories.models import Memory
from memories.services import memory_delete_by_staff, memory_restore_by_staff, memory_save_by_staff


class TrashFilter(admin.SimpleListFilter):
    """Memories in use by default; the trash on request (what the rest of the service never shows)."""

    title = "trash"
    parameter_name = "trash"

    def lookups(self, request, model_admin):
        return [("trashed", "In the trash"), ("all", "All")]

    def choices(self, changelist):
        # "Not in the trash" is the default, so it is the filter's first choice, not "All".
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Not in the trash",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        if self.value() == "trashed":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "all":
            return queryset
        return queryset.filter(deleted_at__isnull=True)


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ["__str__", "tenant", "owner", "visibility", "embedding_status", "updated_at", "deleted_at"]
    list_filter = [TrashFilter, "tenant", "visibility", "embedding_status"]
    search_fields = ["title", "content"]
    readonly_fields = [
        "id",
        "created_at",
        "updated_at",
        "embedding_status",
        "embedding_model",
        "embedded_at",
        "deleted_at",
        "deleted_by",
    ]
    raw_id_fields = ["owner"]
    actions = ["restore"]

    def get_queryset(self, request):
        return Memory.all_objects.select_related("tenant", "owner")  # the trash filter narrows it

    def save_model(self, request, obj, form, change):
        memory_save_by_staff(actor=Actor.of(request.user), memory=obj)

    def delete_model(self, request, obj):
        memory_delete_by_staff(actor=Actor.of(request.user), memory=obj)

    def delete_queryset(self, request, queryset):
        # One at a time through the service, so each delete's event names who deleted it.
        for memory in queryset:
            memory_delete_by_staff(actor=Actor.of(request.user), memory=memory)

    @admin.action(description="Restore the selected memories from the trash", permissions=["change"])
    def restore(self, request, queryset):
        restored = 0
        for memory in queryset.filter(deleted_at__isnull=False):
            memory_restore_by_staff(actor=Actor.of(request.user), memory=memory)
            restored += 1
        self.message_user(request, f"Restored {restored} memories from the trash.")
