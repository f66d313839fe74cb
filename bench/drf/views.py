"""The bare DRF create: a ModelSerializer and a CreateAPIView, with no authentication, permission or throttle."""

from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny

from bench.drf.models import Note


class NoteSerializer(serializers.ModelSerializer):
    class Meta:
        model = Note
        fields = ["id", "title", "content", "visibility", "created_at"]


class NoteCreateApi(generics.CreateAPIView):
    """POST /bench/notes/: what DRF alone costs for a create on this server stack and database."""

    serializer_class = NoteSerializer
    authentication_classes = []
    permission_classes = [AllowAny]
