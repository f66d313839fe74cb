"""The Memory: a note with a title, content, tags and a visibility, owned by one user in one tenant."""

import unicodedata
import uuid
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models, router, transaction

from accounts.models import Tenant

if TYPE_CHECKING:
    from accounts.principal import Actor

# Limits on what a client may write; documented in docs/rest-api.md, "Limits on what you write".
TITLE_MAX_LENGTH = 200
CONTENT_MAX_LENGTH = 100_000
TAGS_MAX_COUNT = 20
TAG_MAX_LENGTH = 50


def normalize_tag(tag: str) -> str:
    """A tag as stored and matched: without invisible format characters (zero-width spaces), trimmed, lower-case."""
    return "".join(char for char in tag if unicodedata.category(char) != "Cf").strip().lower()


# The fields clients see change; `memory.updated` reports only these.
CLIENT_FIELDS = ("title", "content", "tags", "visibility")
# What a save remembers of the row it loaded: the client fields, who may see it, and whether it is in the trash.
LOADED_FIELDS = (*CLIENT_FIELDS, "tenant_id", "owner_id", "deleted_at")
# What save() resets when the text changes.
EMBEDDING_STATE_FIELDS = (
    "text_version",
    "embedding_status",
    "embedding_attempts",
    "embedding_retry_at",
    "embedding_error",
)


class Visibility(models.TextChoices):
    PRIVATE = "private", "Private"
    TEAM = "team", "Team"
    PUBLIC = "public", "Public"


class EmbeddingStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class LiveMemoryManager(models.Manager):
    """Memories not in the trash: what every read path sees (the trash has its own queries, on `all_objects`)."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(deleted_at__isnull=True)


class Memory(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memories")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memories")
    title = models.CharField(max_length=TITLE_MAX_LENGTH, blank=True)
    content = models.TextField(max_length=CONTENT_MAX_LENGTH, blank=True)
    tags = models.JSONField(default=list, blank=True)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.TEAM)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Filled in the background by the embeddings worker.
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    embedding_model = models.CharField(max_length=100, blank=True, editable=False)
    embedding_status = models.CharField(
        max_length=10, choices=EmbeddingStatus.choices, default=EmbeddingStatus.PENDING, editable=False
    )
    embedded_at = models.DateTimeField(null=True, blank=True, editable=False)
    embedding_error = models.CharField(max_length=500, blank=True, editable=False)
    embedding_attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    embedding_retry_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Bumped whenever title or content change, so a worker never stores the
    # embedding of text that was edited while it was computing.
    text_version = models.PositiveIntegerField(default=1, editable=False)
    # Bumped by every change a client can see (what memory.updated reports, or who
    # may see it), so clients detect stale edits (If-Match) and stale events.
    version = models.PositiveIntegerField(default=1, editable=False)
    # Who made the last change, and their name then (events and the web UI show it without a query).
    # Services record it (changed_by); a bare ORM write keeps the one recorded before it.
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    updated_by_name = models.CharField(max_length=150, blank=True, editable=False)
    # Set when the memory is deleted: it is in the trash, gone for every read, until restored or purged.
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    # The first manager is the default one (related managers, admin, forms): it hides the trash.
    objects = LiveMemoryManager()
    all_objects = models.Manager()  # noqa: DJ012 (a manager, declared after the fields)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["tenant", "visibility", "-created_at"]),
            models.Index(fields=["tenant", "updated_at"]),
            models.Index(fields=["tenant", "owner"]),
            models.Index(fields=["embedding_status", "updated_at"]),
            models.Index(fields=["tenant", "embedded_at"]),
            models.Index(fields=["tenant", "deleted_at"]),
        ]
        base_manager_name = "all_objects"  # saves and relations reach memories in the trash too
        verbose_name_plural = "memories"

    def __str__(self) -> str:
        return self.title or self.content[:50] or str(self.id)

    def save(self, *args, **kwargs) -> None:
        # The invariants every write keeps, whoever makes it (services, admin, a shell).
        fields = set()
        if self.text_changed():
            fields |= self._reset_embedding()
        if not self._state.adding and self.audience_or_fields_changed():
            fields |= self._bump_version()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], *fields}
        # One transaction for the row and what post_save writes with it (the event log).
        with transaction.atomic(using=kwargs.get("using") or router.db_for_write(Memory), savepoint=False):
            super().save(*args, **kwargs)
        # post_save has seen the changes by now; the next save compares with this one.
        self._loaded = {field: getattr(self, field) for field in LOADED_FIELDS}

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded = {f: v for f, v in zip(field_names, values, strict=True) if f in LOADED_FIELDS}
        return instance

    def delete(self, *args, **kwargs):
        # One transaction for the row and what post_delete writes with it (the event log).
        with transaction.atomic(using=kwargs.get("using") or router.db_for_write(Memory), savepoint=False):
            return super().delete(*args, **kwargs)

    def changed_by(self, actor: "Actor") -> None:
        """Record who makes the change about to be saved (or the delete about to happen)."""
        self.updated_by_id, self.updated_by_name = actor.user_id, actor.user_name

    @property
    def in_trash(self) -> bool:
        return self.deleted_at is not None

    def trash_changed(self) -> str | None:
        """What this save does to the trash: "trashed", "restored" or None."""
        was, now = self.loaded("deleted_at") is not None, self.deleted_at is not None
        if was == now:
            return None
        return "trashed" if now else "restored"

    def text_changed(self) -> bool:
        """Whether the text to embed changes with this save (always for a new memory)."""
        return self._state.adding or bool({"title", "content"} & set(self.client_changes()))

    def audience_or_fields_changed(self) -> bool:
        """Whether a client could notice this save: a client field, the owner or the tenant changes."""
        return bool(self.client_changes()) or any(self.loaded(f) != getattr(self, f) for f in ("tenant_id", "owner_id"))

    def _reset_embedding(self) -> set[str]:
        # A worker computing the old text's embedding sees text_version moved and drops its result.
        if not self._state.adding:
            self.text_version += 1
        self.embedding_status = EmbeddingStatus.PENDING
        self.embedding_attempts = 0
        self.embedding_retry_at = None
        self.embedding_error = ""
        return set(EMBEDDING_STATE_FIELDS)

    def _bump_version(self) -> set[str]:
        self.version += 1
        return {"version"}

    def loaded(self, field: str) -> Any:
        """The field's value when the row was loaded (or last saved); its current value if not known."""
        return getattr(self, "_loaded", {}).get(field, getattr(self, field))

    def client_changes(self) -> dict[str, Any]:
        """The client-visible fields that differ from what was loaded, with their new values."""
        loaded = getattr(self, "_loaded", None)
        if loaded is None:
            return {field: getattr(self, field) for field in CLIENT_FIELDS}
        return {f: getattr(self, f) for f in CLIENT_FIELDS if f in loaded and loaded[f] != getattr(self, f)}
