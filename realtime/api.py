from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.limits import connection_registry


class WebSocketStatusApi(APIView):
    @extend_schema(
        responses=inline_serializer(
            "WebSocketStatus",
            {
                "user_connections": serializers.IntegerField(),
                "tenant_connections": serializers.IntegerField(),
                "total_connections": serializers.IntegerField(),
                "websocket_url": serializers.CharField(),
            },
        )
    )
    def get(self, request):
        """Open WebSocket connections of the caller, their tenant and everyone, across all server processes."""
        counts = connection_registry().counts(request.auth.user_id, request.auth.tenant_id)
        return Response({**counts, "websocket_url": "/ws"})
