"""REST endpoints for tokens and API keys."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from accounts.models import ApiKey
from accounts.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeySerializer,
    CheckedTokenRefreshSerializer,
    TenantTokenObtainPairSerializer,
)
from accounts.services import api_key_create, api_key_revoke


class TokenObtainView(TokenObtainPairView):
    serializer_class = TenantTokenObtainPairSerializer


class CheckedTokenRefreshView(TokenRefreshView):
    serializer_class = CheckedTokenRefreshSerializer


class ApiKeyListApi(APIView):
    @extend_schema(responses=ApiKeySerializer(many=True))
    def get(self, request):
        keys = ApiKey.objects.filter(user=request.user).order_by("-created_at")
        return Response(ApiKeySerializer(keys, many=True).data)

    @extend_schema(request=ApiKeySerializer, responses={201: ApiKeyCreatedSerializer})
    def post(self, request):
        serializer = ApiKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_key, key = api_key_create(user=request.user, name=serializer.validated_data.get("name", ""))
        api_key.key = key
        return Response(ApiKeyCreatedSerializer(api_key).data, status=status.HTTP_201_CREATED)


class ApiKeyDetailApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, pk: int):
        api_key_revoke(api_key=get_object_or_404(ApiKey, pk=pk, user=request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)
