"""Credentials as the API issues them, for tests that talk to the application in-process."""

from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.principal import password_stamp


def jwt_for(user) -> str:
    """An access token as the token endpoint issues it."""
    token = AccessToken.for_user(user)
    token["tenant"] = user.membership.tenant.slug
    token["pwd"] = password_stamp(user)
    return str(token)


def bearer(token: str) -> APIClient:
    """An API client that sends `Authorization: Bearer <token>`."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
