from rest_framework import serializers

from memories.models import (
    CONTENT_MAX_LENGTH,
    TAG_MAX_LENGTH,
    TAGS_MAX_COUNT,
    TITLE_MAX_LENGTH,
    Memory,
    Visibility,
    normalize_tag,
)


class StringField(serializers.CharField):
    """A CharField that takes JSON strings only: DRF's own stores 1 as "1" and 1e999 as "inf"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class MemoryOutputSerializer(serializers.ModelSerializer):
    owner = serializers.SerializerMethodField()

    class Meta:
        model = Memory
        fields = [
            "id",
            "title",
            "content",
            "tags",
            "visibility",
            "owner",
            "embedding_status",
            "version",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {"version": {"help_text": "Grows by one with every change a client can see; the ETag."}}

    def get_owner(self, memory: Memory) -> dict:
        return {"id": memory.owner_id, "username": memory.owner.get_username()}

    def to_representation(self, memory: Memory) -> dict:
        """The fields above, written out: DRF builds a ModelSerializer's fields anew for each instance, which
        was a tenth of a create's CPU (tests/test_memories_api.py compares this with DRF's own rendering)."""
        fields = {**memory_data(memory), "owner": self.get_owner(memory), "embedding_status": memory.embedding_status}
        return {name: fields[name] for name in self.Meta.fields}  # in the documented order


def memory_data(memory: Memory) -> dict:
    """The memory as every client sees it: in REST responses (with its owner and embedding status) and in events."""
    return {
        "id": str(memory.id),
        "title": memory.title,
        "content": memory.content,
        "tags": list(memory.tags),
        "visibility": memory.visibility,
        "version": memory.version,
        "created_at": _drf_datetime(memory.created_at),
        "updated_at": _drf_datetime(memory.updated_at),
    }


_drf_datetime = serializers.DateTimeField().to_representation  # one, not one per serialized memory


class MemoryInputSerializer(serializers.Serializer):
    title = StringField(max_length=TITLE_MAX_LENGTH, allow_blank=True, required=False, default="")
    content = StringField(
        max_length=CONTENT_MAX_LENGTH, allow_blank=True, required=False, default="", trim_whitespace=False
    )
    tags = serializers.ListField(
        child=StringField(max_length=TAG_MAX_LENGTH),
        max_length=TAGS_MAX_COUNT,
        required=False,
        default=list,
    )
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False, default=Visibility.TEAM)

    def validate_tags(self, tags: list[str]) -> list[str]:
        # Tags are case-insensitive: stored normalized (models.normalize_tag), once each, in order; the length
        # counts what is stored, since case folding can lengthen a tag ("ß" is "ss").
        cleaned = [normalize_tag(tag) for tag in tags]
        if not all(cleaned):
            raise serializers.ValidationError("Tags may not be blank.")
        if any(len(tag) > TAG_MAX_LENGTH for tag in cleaned):
            raise serializers.ValidationError(f"Ensure each tag has no more than {TAG_MAX_LENGTH} characters.")
        return list(dict.fromkeys(cleaned))

    def validate(self, attrs: dict) -> dict:
        if self.partial:
            return attrs  # the other field is the stored one: the service checks the memory as it will be
        title, content = attrs.get("title", ""), attrs.get("content", "")
        if not title.strip() and not content.strip():
            raise serializers.ValidationError({"content": ["A memory needs a title or content."]})
        return attrs


class MemoryUpdateSerializer(MemoryInputSerializer):
    """PUT and PATCH: the memory's fields, and optionally the version the change was made against."""

    expected_version = serializers.IntegerField(
        min_value=1,
        required=False,
        write_only=True,
        help_text="Write only if the memory is still at this version (like If-Match); otherwise 412. Not stored.",
    )


class MemoryConflictSerializer(serializers.Serializer):
    """412: the memory changed since the version the client named; here is what it is now."""

    detail = serializers.CharField()
    memory = MemoryOutputSerializer()


class MemoryFilterSerializer(serializers.Serializer):
    tag = serializers.CharField(max_length=TAG_MAX_LENGTH, required=False)
    owner = serializers.CharField(max_length=150, required=False, help_text="The owner's username.")
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False)
    q = serializers.CharField(max_length=200, required=False)
    updated_since = serializers.DateTimeField(required=False)


class MemorySearchSerializer(serializers.Serializer):
    q = serializers.CharField(max_length=1000)
    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)


class MemorySearchResultSerializer(serializers.Serializer):
    memory = MemoryOutputSerializer()
    score = serializers.FloatField(
        help_text="The fused rank score (reciprocal rank fusion): higher is better; compare within one response only."
    )
    match = serializers.ChoiceField(
        choices=["keyword", "semantic", "both"],
        help_text="keyword: holds every word of the query; semantic: about it by meaning; both: both.",
    )
    similarity = serializers.FloatField(
        allow_null=True, help_text="Cosine similarity of the memory's meaning to the query; null for keyword matches."
    )


class TrashedMemorySerializer(MemoryOutputSerializer):
    """A memory in the trash: the memory, and when and by whom it was deleted."""

    deleted_at = serializers.DateTimeField()
    deleted_by = serializers.SerializerMethodField()

    class Meta(MemoryOutputSerializer.Meta):
        fields = [*MemoryOutputSerializer.Meta.fields, "deleted_at", "deleted_by"]

    to_representation = serializers.ModelSerializer.to_representation  # DRF's own, for the extra fields

    def get_deleted_by(self, memory: Memory) -> dict | None:
        if memory.deleted_by_id is None:
            return None
        return {"id": memory.deleted_by_id, "username": memory.deleted_by.get_username()}
