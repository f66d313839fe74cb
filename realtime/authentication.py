"""Who opens a /ws connection: from its ticket, its token, or the session of a same-origin page."""

from urllib.parse import parse_qs

from accounts.principal import Principal, principal_from_token, principal_of_session
from realtime.tickets import principal_from_ticket


def principal_of_scope(scope: dict) -> Principal:
    """The principal a connection authenticates as; raises InvalidToken (and RedisError for a ticket)."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "ticket" in query:  # browsers: a single-use ticket keeps long-lived tokens out of URLs
        return principal_from_ticket(query["ticket"][0])
    if "token" in query:
        return principal_from_token(query["token"][0])
    # The web UI: its session cookie, loaded only for a same-origin page (realtime/routing.py).
    return principal_of_session(scope.get("session"))
