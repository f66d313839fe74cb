"""REST endpoints for memories: thin views over selectors and services."""

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from memories.models import Memory
from memories.selectors import memory_list, memory_search
from memories.serializers import (
    MemoryFilterSerializer,
    MemoryInputSerializer,
    MemoryOutputSerializer,
    MemorySearchResultSerializer,
    MemorySearchSerializer,
)
from memories.services import memory_create, memory_delete, memory_update
from memories.visibility import visible_memories


class MemoryListApi(APIView):
    @extend_schema(
        parameters=[MemoryFilterSerializer, OpenApiParameter("page", int)],
        responses=MemoryOutputSerializer(many=True),
    )
    def get(self, request):
        filters = MemoryFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(memory_list(viewer=request.auth, filters=filters.validated_data), request)
        return paginator.get_paginated_response(MemoryOutputSerializer(page, many=True).data)

    @extend_schema(request=MemoryInputSerializer, responses={201: MemoryOutputSerializer})
    def post(self, request):
        serializer = MemoryInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        memory = memory_create(author=request.auth, **serializer.validated_data)
        return Response(MemoryOutputSerializer(memory).data, status=status.HTTP_201_CREATED)


class MemorySearchApi(APIView):
    @extend_schema(parameters=[MemorySearchSerializer], responses=MemorySearchResultSerializer(many=True))
    def get(self, request):
        """Visible memories ranked by meaning; memories not yet embedded appear only as marked text matches."""
        params = MemorySearchSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        results = memory_search(viewer=request.auth, **params.validated_data)
        return Response({"results": MemorySearchResultSerializer(results, many=True).data})


class MemoryDetailApi(APIView):
    def get_memory(self, request, pk) -> Memory:
        # Another tenant's memory and one the caller may not see are the same 404.
        memory = visible_memories(request.auth).select_related("owner").filter(pk=pk).first()
        if memory is None:
            raise Http404
        return memory

    @extend_schema(responses=MemoryOutputSerializer)
    def get(self, request, pk):
        return Response(MemoryOutputSerializer(self.get_memory(request, pk)).data)

    @extend_schema(request=MemoryInputSerializer, responses=MemoryOutputSerializer)
    def put(self, request, pk):
        return self._update(request, pk, partial=False)

    @extend_schema(request=MemoryInputSerializer, responses=MemoryOutputSerializer)
    def patch(self, request, pk):
        return self._update(request, pk, partial=True)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        memory_delete(editor=request.auth, memory=self.get_memory(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _update(self, request, pk, *, partial: bool):
        memory = self.get_memory(request, pk)
        serializer = MemoryInputSerializer(memory, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        memory = memory_update(editor=request.auth, memory=memory, data=serializer.validated_data)
        return Response(MemoryOutputSerializer(memory).data)
