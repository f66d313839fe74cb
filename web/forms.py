"""The memory form: HTML fields in, the REST serializer's rules applied (one set of rules for both)."""

from django import forms
from rest_framework import serializers

from memories.models import CONTENT_MAX_LENGTH, TITLE_MAX_LENGTH, Visibility
from memories.serializers import MemoryFilterSerializer, MemoryInputSerializer


class MemoryForm(forms.Form):
    title = forms.CharField(max_length=TITLE_MAX_LENGTH, required=False)
    content = forms.CharField(max_length=CONTENT_MAX_LENGTH, required=False, widget=forms.Textarea(attrs={"rows": 4}))
    tags = forms.CharField(required=False, help_text="Comma-separated, e.g. release, team")
    visibility = forms.ChoiceField(choices=Visibility.choices, initial=Visibility.TEAM)
    # The version the edit was made against: a change meanwhile is a conflict, not an overwrite.
    expected_version = forms.IntegerField(min_value=1, required=False, widget=forms.HiddenInput)

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        raw_tags = [tag for tag in cleaned.get("tags", "").split(",") if tag.strip()]
        data = {
            "title": cleaned.get("title", ""),
            "content": cleaned.get("content", ""),
            "tags": raw_tags,
            "visibility": cleaned.get("visibility"),
        }
        serializer = MemoryInputSerializer(data=data)
        if not serializer.is_valid():
            for field, errors in serializer.errors.items():
                for message in _messages(errors):
                    self.add_error(field if field in self.fields else None, message)
            return cleaned
        self.memory_data = dict(serializer.validated_data)
        return cleaned

    @classmethod
    def of(cls, memory, **kwargs) -> "MemoryForm":
        """A form showing the memory as it is, to be edited against its current version."""
        initial = {
            "title": memory.title,
            "content": memory.content,
            "tags": ", ".join(memory.tags),
            "visibility": memory.visibility,
            "expected_version": memory.version,
        }
        return cls(initial=initial, **kwargs)


class VersionForm(forms.Form):
    """A delete: only the version it was asked against."""

    expected_version = forms.IntegerField(min_value=1, required=False)


def _messages(errors) -> list[str]:
    """A serializer's errors for one field as flat messages (a list's are keyed by item)."""
    if isinstance(errors, dict):
        return [message for nested in errors.values() for message in _messages(nested)]
    if isinstance(errors, list):
        return [message for nested in errors for message in _messages(nested)]
    return [str(errors)]


class ListQuery(MemoryFilterSerializer):
    """The list's filters (REST's, one set of rules), its order and its cursor: past (`before`, `before_id`)."""

    sort = serializers.ChoiceField(choices=["newest", "oldest"], required=False, help_text="By creation time.")
    # The last memory the page holds, in the list's order: the next page starts after it.
    before = serializers.DateTimeField(required=False)
    before_id = serializers.UUIDField(required=False)

    def validate(self, attrs: dict) -> dict:
        if ("before" in attrs) != ("before_id" in attrs):
            raise serializers.ValidationError("before and before_id go together.")
        return attrs

    def filters(self) -> dict:
        """The filters for memory_list."""
        return {name: value for name, value in self.params().items() if name != "sort"}

    def params(self) -> dict:
        """The filters and the order: what the page's URL says (the cursor is not)."""
        return {name: value for name, value in self.validated_data.items() if name not in ("before", "before_id")}

    def oldest_first(self) -> bool:
        return self.validated_data.get("sort") == "oldest"

    def cursor(self) -> tuple | None:
        """(created_at, id) of the last memory the page holds, or None for the first page."""
        data = self.validated_data
        return (data["before"], data["before_id"]) if "before" in data else None
