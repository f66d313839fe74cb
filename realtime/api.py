import json
import logging

from drf_spectacular.utils import extend_schema, inline_serializer
from redis.exceptions import RedisError
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import BearerAuthentication
from realtime.log import resync_reason
from realtime.node import node
from realtime.protocol import MAX_EPOCH_LENGTH
from realtime.redis_clients import log_failure
from realtime.replay import replay
from realtime.tickets import ticket_issue

logger = logging.getLogger(__name__)

EVENTS_DEFAULT_LIMIT = 100
EVENTS_MAX_LIMIT = 1000
RESYNC_DETAILS = {
    "expired": "Events after this seq are no longer kept; reload the memory list.",
    "ahead": "This seq is ahead of the tenant's newest event; reload the memory list.",
    "epoch": "This seq belongs to another epoch of the tenant's events (a restored database); reload the memory list.",
}


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
            counts = node().registry.counts(request.auth.user_id, request.auth.tenant_id)
        except RedisError as error:
            log_failure(logger, error, "Reading connection counts from Redis failed")
            detail = "Connection counts are unavailable: Redis cannot be reached. Try again shortly."
            return Response({"detail": detail}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response({**counts, "websocket_url": "/ws"})


class WebSocketTicketApi(APIView):
    # Bearer tokens only: a ticket bought with a session cookie would outlive that session.
    authentication_classes = [BearerAuthentication]

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
        except RedisError as error:
            log_failure(logger, error, "Storing a WebSocket ticket in Redis failed")
            detail = "Tickets are unavailable: Redis cannot be reached. Try again shortly."
            return Response({"detail": detail}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        # The ticket is a credential: no cache may keep it.
        return Response(
            {"ticket": ticket, "expires_in": expires_in},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class EventListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        after_seq = serializers.IntegerField(min_value=0)
        limit = serializers.IntegerField(min_value=1, max_value=EVENTS_MAX_LIMIT, default=EVENTS_DEFAULT_LIMIT)
        epoch = serializers.CharField(
            max_length=MAX_EPOCH_LENGTH, required=False, help_text="The epoch `after_seq` belongs to."
        )

    @extend_schema(
        parameters=[FilterSerializer],
        responses={
            200: inline_serializer(
                "EventPage",
                {
                    "events": serializers.ListField(
                        child=serializers.DictField(), help_text="Frames as /ws sends them, each with its `seq`."
                    ),
                    "last_seq": serializers.IntegerField(help_text="Ask again with after_seq=last_seq."),
                    "current_seq": serializers.IntegerField(help_text="The tenant's newest event."),
                    "epoch": serializers.CharField(help_text="The epoch these seqs belong to.", allow_null=True),
                },
            ),
            410: inline_serializer(
                "ResyncRequired",
                {
                    "detail": serializers.CharField(),
                    "reason": serializers.CharField(),
                    "current_seq": serializers.IntegerField(),
                    "epoch": serializers.CharField(allow_null=True),
                },
            ),
        },
    )
    def get(self, request):
        """The tenant's memory events after `after_seq` that the caller may see now: the polling form of /ws."""
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        after_seq, limit = filters.validated_data["after_seq"], filters.validated_data["limit"]
        reason, current = resync_reason(request.auth.tenant_id, after_seq, filters.validated_data.get("epoch"))
        if reason is not None:
            body = {
                "detail": RESYNC_DETAILS[reason],
                "reason": reason,
                "current_seq": current.seq,
                "epoch": current.epoch,
            }
            return Response(body, status=status.HTTP_410_GONE)
        page = replay(request.auth, after_seq, epoch=current.epoch, limit=limit)
        events = [json.loads(text) for text in page.frames]
        return Response(
            {"events": events, "last_seq": page.last_seq, "current_seq": current.seq, "epoch": current.epoch}
        )
