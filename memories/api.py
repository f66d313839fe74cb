"""REST endpoints for memories: thin views over selectors and services."""

from collections.abc import Callable
from typing import Any

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from memories.models import Memory
from memories.selectors import consistent_read, memory_list, memory_search, memory_trash
from memories.serializers import (
    MemoryConflictSerializer,
    MemoryFilterSerializer,
    MemoryInputSerializer,
    MemoryOutputSerializer,
    MemorySearchResultSerializer,
    MemorySearchSerializer,
    MemoryUpdateSerializer,
    TrashedMemorySerializer,
)
from memories.services import (
    InvalidMemory,
    VersionConflict,
    memory_create,
    memory_delete,
    memory_restore,
    memory_update,
)
from memories.visibility import visible_memories


def parse_if_match(request) -> int | None:
    """The version an If-Match header names (`"3"`, also `W/"3"` or `3`); None without one or for `*`."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    value = header.strip().removeprefix("W/").strip('"')
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise ParseError('If-Match must name one version of the memory, as its ETag does: "3".')
    return int(value)


def with_etag(response: Response, memory: Memory) -> Response:
    """A strong ETag of the memory's version: it changes with every change a client can see."""
    response["ETag"] = f'"{memory.version}"'
    return response


ETAG = OpenApiParameter(
    "ETag",
    str,
    OpenApiParameter.HEADER,
    response=True,
    description='The memory\'s version, quoted: `"3"`. Send it back in If-Match to write only that version.',
)
ETAG_OF_CONFLICT = OpenApiParameter(
    "ETag", str, OpenApiParameter.HEADER, response=[412], description="The current version, quoted."
)
IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    description=(
        'Write only if the memory is still at this version: its ETag, `"3"` (`W/"3"` and `3` are accepted too). '
        "Otherwise 412 with the current memory, and nothing is written. A value that is not a version is a 400."
    ),
)
CONFLICT = OpenApiResponse(
    MemoryConflictSerializer, description="The memory is no longer at the version named; `memory` is what it is now."
)


def precondition_failed(current: Memory) -> Response:
    """412: the version named is not the memory's any more; the body and ETag tell the client what it is now."""
    detail = f"The memory has changed: it is at version {current.version}. Nothing was written."
    body = {"detail": detail, "memory": MemoryOutputSerializer(current).data}
    return with_etag(Response(body, status=status.HTTP_412_PRECONDITION_FAILED), current)


class StreamPositionPagination(PageNumberPagination):
    """Pages that also say which event `seq` they reflect."""

    def get_paginated_response_schema(self, schema: dict) -> dict:
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["seq"] = {
            "type": "integer",
            "description": "The tenant's event seq these rows reflect: resume /ws or poll /events from it.",
        }
        schema["properties"]["epoch"] = {
            "type": "string",
            "nullable": True,
            "description": "The epoch `seq` belongs to: send it with `last_seq` when resuming.",
        }
        return schema


class MemoryListApi(APIView):
    pagination_class = StreamPositionPagination
    # Where the tenant's event stream stands (tenant_id -> {seq, epoch}); wired in by the URL
    # configuration, since the event log belongs to the real-time layer.
    stream_position: Callable[[int], dict[str, Any]] | None = None

    @extend_schema(
        parameters=[MemoryFilterSerializer, OpenApiParameter("page", int)],
        responses=MemoryOutputSerializer(many=True),
    )
    def get(self, request):
        filters = MemoryFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        paginator = self.pagination_class()
        # The rows and the position they reflect come from one snapshot: a client that
        # resumes the stream from `seq` misses nothing and doubles nothing.
        with consistent_read():
            memories = memory_list(viewer=request.auth, filters=filters.validated_data)
            page = paginator.paginate_queryset(memories, request)
            rows = MemoryOutputSerializer(page, many=True).data
            position = self.stream_position(request.auth.tenant_id) if self.stream_position else {}
        response = paginator.get_paginated_response(rows)
        response.data["seq"] = position.get("seq")
        response.data["epoch"] = position.get("epoch")
        return response

    @extend_schema(request=MemoryInputSerializer, responses={201: MemoryOutputSerializer}, parameters=[ETAG])
    def post(self, request):
        serializer = MemoryInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        memory = memory_create(author=request.auth, **serializer.validated_data)
        memory.owner = request.user  # the author, loaded by authentication: no query for the owner's name
        return with_etag(Response(MemoryOutputSerializer(memory).data, status=status.HTTP_201_CREATED), memory)


class MemorySearchApi(APIView):
    @extend_schema(parameters=[MemorySearchSerializer], responses=MemorySearchResultSerializer(many=True))
    def get(self, request):
        """Visible memories holding the query's words or about it by meaning, fused by rank; none below the
        relevance floor. Memories not embedded yet are found by their words."""
        params = MemorySearchSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        results = memory_search(viewer=request.auth, **params.validated_data)
        return Response({"results": MemorySearchResultSerializer(results, many=True).data})


class MemoryTrashApi(APIView):
    pagination_class = PageNumberPagination

    @extend_schema(parameters=[OpenApiParameter("page", int)], responses=TrashedMemorySerializer(many=True))
    def get(self, request):
        """The deleted memories you may restore (yours, and as an admin others' non-private ones), most recently
        deleted first; each is kept PUOMEMO_TRASH_RETENTION_DAYS days (30), then deleted for good."""
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(memory_trash(viewer=request.auth), request)
        return paginator.get_paginated_response(TrashedMemorySerializer(page, many=True).data)


class MemoryRestoreApi(APIView):
    @extend_schema(
        request=None,
        parameters=[ETAG],
        responses={
            200: MemoryOutputSerializer,
            403: OpenApiResponse(description="You may see the memory but not restore it."),
            404: OpenApiResponse(description="No such memory you may see, or past the trash's retention."),
        },
    )
    def post(self, request, pk):
        """Take a deleted memory out of the trash: it is back for everyone who may see it (`memory.restored`).
        Restoring a memory that is not in the trash changes nothing and answers 200 with it."""
        try:
            memory = memory_restore(actor=request.auth, memory=pk)
        except Memory.DoesNotExist:
            raise Http404 from None
        return with_etag(Response(MemoryOutputSerializer(memory).data), memory)


class MemoryDetailApi(APIView):
    def get_memory(self, request, pk) -> Memory:
        # Another tenant's memory and one the caller may not see are the same 404.
        memory = visible_memories(request.auth).select_related("owner").filter(pk=pk).first()
        if memory is None:
            raise Http404
        return memory

    @extend_schema(parameters=[ETAG], responses=MemoryOutputSerializer)
    def get(self, request, pk):
        memory = self.get_memory(request, pk)
        return with_etag(Response(MemoryOutputSerializer(memory).data), memory)

    @extend_schema(
        parameters=[IF_MATCH, ETAG],
        request=MemoryUpdateSerializer,
        responses={200: MemoryOutputSerializer, 412: CONFLICT},
    )
    def put(self, request, pk):
        return self._update(request, pk, partial=False)

    @extend_schema(
        parameters=[IF_MATCH, ETAG],
        request=MemoryUpdateSerializer,
        responses={200: MemoryOutputSerializer, 412: CONFLICT},
    )
    def patch(self, request, pk):
        return self._update(request, pk, partial=True)

    @extend_schema(parameters=[IF_MATCH, ETAG_OF_CONFLICT], responses={204: None, 412: CONFLICT})
    def delete(self, request, pk):
        expected_version = parse_if_match(request)
        try:
            # The service reads the row under its lock: one read, and a 404 for what the caller may not see.
            memory_delete(editor=request.auth, memory=pk, expected_version=expected_version)
        except Memory.DoesNotExist:
            raise Http404 from None
        except VersionConflict as conflict:
            return precondition_failed(conflict.current)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _update(self, request, pk, *, partial: bool):
        if_match = parse_if_match(request)
        serializer = MemoryUpdateSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        expected_version = data.pop("expected_version", None)
        if None not in (if_match, expected_version) and if_match != expected_version:
            raise ParseError("If-Match and expected_version name different versions.")
        if if_match is not None:
            expected_version = if_match
        try:
            memory = memory_update(editor=request.auth, memory=pk, data=data, expected_version=expected_version)
        except Memory.DoesNotExist:
            raise Http404 from None
        except InvalidMemory as invalid:
            raise ValidationError(invalid.errors) from None
        except VersionConflict as conflict:
            return precondition_failed(conflict.current)
        return with_etag(Response(MemoryOutputSerializer(memory).data), memory)
