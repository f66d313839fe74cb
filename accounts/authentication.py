"""DRF authentication: `Authorization: Bearer <JWT or API key>`."""

from rest_framework import authentication, exceptions

from accounts.auth_cache import auth_cache
from accounts.principal import InvalidToken


class BearerAuthentication(authentication.BaseAuthentication):
    """Sets request.user to the user and request.auth to their Principal."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        try:
            token = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("A token is ASCII; this one is not.") from None
        try:
            return auth_cache.authenticate(token)
        except InvalidToken as error:
            raise exceptions.AuthenticationFailed(str(error)) from None

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (with WWW-Authenticate) rather than 403.
        return self.keyword
