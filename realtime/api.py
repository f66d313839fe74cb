import logging

from drf_spectacular.utils import extend_schema, inline_serializer
from redis.exceptions import RedisError
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.limits import connection_registry
from realtime.tickets import ticket_issue

logger = logging.getLogger(__name__)


class WebSocketStatusApi(APIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "WebSocketStatus",
                {
                    "user_connections": serializers.IntegerField(),
                    "tenant_connections": serializers.IntegerField(),
                    "total_connections": serializers.IntegerField(),
                    "websocket_url": serializers.CharField(),
                },
            ),
            503: inline_serializer("WebSocketStatusUnavailable", {"detail": serializers.CharField()}),
        }
    )
    def get(self, request):
        """Open WebSocket connections of the caller, their tenant and everyone, across all server processes."""
        try:
            counts = connection_registry().counts(request.auth.user_id, request.auth.tenant_id)
        except RedisError:
            logger.exception("Reading connection counts from Redis failed")
            detail = "Connection counts are unavailable: Redis cannot be reached. Try again shortly."
            return Response({"detail": detail}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response({**counts, "websocket_url": "/ws"})


class WebSocketTicketApi(APIView):
    @extend_schema(
        request=None,
        responses={
            201: inline_serializer(
                "WebSocketTicket",
                {
                    "ticket": serializers.CharField(help_text="Open `/ws?ticket=<ticket>` with it, once."),
                    "expires_in": serializers.IntegerField(help_text="Seconds the ticket stays valid."),
                },
            ),
            503: inline_serializer("WebSocketTicketUnavailable", {"detail": serializers.CharField()}),
        },
    )
    def post(self, request):
        """A ticket that opens `/ws?ticket=` once as the caller within `expires_in` seconds, for browsers."""
        try:
            ticket, expires_in = ticket_issue(principal=request.auth)
        except RedisError:
            logger.exception("Storing a WebSocket ticket in Redis failed")
            detail = "Tickets are unavailable: Redis cannot be reached. Try again shortly."
            return Response({"detail": detail}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        # The ticket is a credential: no cache may keep it.
        return Response(
            {"ticket": ticket, "expires_in": expires_in},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )
