"""Describe the API's two authentications in the OpenAPI schema: Bearer (JWT or API key) and the web UI's session."""

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A JWT access token from /api/v4/auth/token/, or an API key (pm_…).",
        }


class SessionPrincipalAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "web.authentication.SessionPrincipalAuthentication"
    name = "session"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "The web UI's login session; writes also need its CSRF token (X-CSRFToken).",
        }
