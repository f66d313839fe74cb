"""DRF authentication by the web UI's session cookie, with Django's CSRF check on writes."""

from rest_framework.authentication import SessionAuthentication

from accounts.principal import InvalidToken, principal_of_user


class SessionPrincipalAuthentication(SessionAuthentication):
    """Sets request.auth to the logged-in user's Principal; a user in no tenant is not authenticated."""

    def authenticate(self, request):
        found = super().authenticate(request)
        if found is None:
            return None
        user = found[0]
        try:
            return user, principal_of_user(user.pk)
        except InvalidToken:
            return None
