"""Short-lived, single-use tickets that open /ws for browsers that cannot send a bearer token."""

import hashlib
import secrets
from dataclasses import replace
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.crypto import constant_time_compare

from accounts.principal import InvalidToken, Principal, password_stamp, principal_of_user
from realtime.node import node
from realtime.ticket_store import TicketGrant

TICKET_PREFIX = "wst_"
# A real ticket is the prefix and 43 characters; anything much longer is not hashed or looked up.
_MAX_TICKET_LENGTH = 64


def _digest(ticket: str) -> str:
    # Only the digest is stored: a copy of the store (or a Redis MONITOR) does not yield usable tickets.
    return hashlib.sha256(ticket.encode()).hexdigest()


def ticket_issue(*, principal: Principal) -> tuple[str, int]:
    """Make a ticket for the principal; return it and the seconds it stays valid. Raises RedisError."""
    ticket = TICKET_PREFIX + secrets.token_urlsafe(32)
    ttl = settings.PUOMEMO_WS_TICKET_TTL_SECONDS
    grant = TicketGrant(
        user_id=principal.user_id,
        tenant_id=principal.tenant_id,
        api_key_id=principal.api_key_id,
        expires_at=principal.expires_at.timestamp() if principal.expires_at else None,
        password_stamp=principal.password_stamp,
    )
    node().tickets.put(_digest(ticket), grant, ttl)
    return ticket, ttl


def ticket_redeem(ticket: str) -> TicketGrant | None:
    """Use up a ticket: its grant the first time within its TTL, None ever after, or if unknown. Raises RedisError."""
    if not ticket.startswith(TICKET_PREFIX) or len(ticket) > _MAX_TICKET_LENGTH:
        return None
    return node().tickets.take(_digest(ticket))


def principal_from_ticket(ticket: str) -> Principal:
    """Redeem a ticket for the principal its user has now, or raise InvalidToken. Raises RedisError."""
    grant = ticket_redeem(ticket)
    if grant is None:
        raise InvalidToken("Unknown, expired or already used ticket.")
    # The user may have been deactivated, moved or given another role, and the key revoked, since the ticket was issued.
    principal = principal_of_user(grant.user_id, api_key_id=grant.api_key_id)
    if principal.tenant_id != grant.tenant_id:
        raise InvalidToken("Ticket does not belong to the user's tenant.")
    if grant.password_stamp is not None:
        # A JWT's ticket: void once the password changed, and it lives no longer than the JWT.
        user = get_user_model().objects.get(pk=grant.user_id)
        if not constant_time_compare(grant.password_stamp, password_stamp(user)):
            raise InvalidToken("The password changed since this ticket was issued.")
        principal = replace(principal, password_stamp=grant.password_stamp)
    if grant.expires_at is None:
        return principal
    return replace(principal, expires_at=datetime.fromtimestamp(grant.expires_at, tz=UTC))
