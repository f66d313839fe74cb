from django.contrib.auth import get_user_model
from rest_framework import exceptions, serializers
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer

from accounts.login_throttle import login_refusal
from accounts.models import ApiKey, Membership
from accounts.principal import InvalidToken, password_stamp, principal_from_token


class TenantTokenObtainPairSerializer(TokenObtainPairSerializer):
    """Issues JWTs that carry the user's tenant; a user without a tenant cannot log in."""

    @classmethod
    def get_token(cls, user):
        membership = Membership.objects.select_related("tenant").filter(user=user).first()
        if membership is None:
            raise exceptions.AuthenticationFailed("This user belongs to no tenant.")
        token = super().get_token(user)
        token["tenant"] = membership.tenant.slug
        token["pwd"] = password_stamp(user)
        return token

    def validate(self, attrs):
        try:
            return super().validate(attrs)
        except exceptions.AuthenticationFailed:
            if throttled := login_refusal(self.context.get("request")):
                raise exceptions.Throttled(wait=throttled.retry_after) from None
            raise


class CheckedTokenRefreshSerializer(TokenRefreshSerializer):
    """A new access token only while the refresh token would still authenticate (same password, tenant, active)."""

    def validate(self, attrs):
        try:
            data = super().validate(attrs)
            principal_from_token(data["access"])
        except get_user_model().DoesNotExist:  # simplejwt lets this one through as a 500
            raise exceptions.AuthenticationFailed("The token's user no longer exists.") from None
        except InvalidToken as error:
            raise exceptions.AuthenticationFailed(str(error)) from None
        return data


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at"]


class ApiKeyCreatedSerializer(serializers.ModelSerializer):
    key = serializers.CharField(read_only=True, help_text="The full key. Shown in this response only.")

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at", "key"]
