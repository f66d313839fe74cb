"""Access never outlives permission: revocation, deactivation, membership changes, token expiry, tickets."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from accounts.access import access_marks, prune_access_changes
from accounts.models import AccessChangeMark, ApiKey, Membership, Role
from accounts.principal import password_stamp
from accounts.services import api_key_revoke
from memories.models import Visibility
from realtime.routing import websocket_application
from realtime.tickets import ticket_issue
from tests.support.auth import jwt_for
from tests.support.factories import MemoryFactory, api_key, principal
from tests.support.wsclient import Refused, close_code, connect, frames

pytestmark = pytest.mark.django_db(transaction=True)

# The issue's bound for a change to close open sockets.
WITHIN = 5


def sync(fn, *args, **kwargs):
    return database_sync_to_async(fn)(*args, **kwargs)


def short_jwt(user, seconds: float) -> str:
    token = AccessToken.for_user(user)
    token["tenant"] = user.membership.tenant.slug
    token["pwd"] = password_stamp(user)
    token.set_exp(lifetime=timedelta(seconds=seconds))
    return str(token)


async def still_open(comm) -> bool:
    await comm.send_json_to({"type": "ping"})
    while True:
        message = await comm.receive_output(2)
        if message["type"] == "websocket.close":
            return False
        if '"pong"' in message["text"]:
            return True


@pytest.fixture
def member(make_user):
    return make_user()


async def test_revoking_the_api_key_closes_its_sockets_4001(member):
    key, other_key = await sync(lambda: (api_key(member), api_key(member)))
    revoked, kept = await connect(key), await connect(other_key)
    await sync(lambda: api_key_revoke(api_key=ApiKey.objects.filter(user=member).order_by("pk").first()))
    assert await close_code(revoked, WITHIN) == 4001
    assert await still_open(kept)  # the user's other key still works
    await revoked.disconnect()
    await kept.disconnect()


@pytest.mark.parametrize(
    "change",
    ["deactivate", "delete membership", "move to another tenant"],
)
async def test_losing_access_closes_every_socket_of_the_user_4001(member, other_tenant, change):
    comms = [await connect(jwt_for(member)), await connect(await sync(api_key, member))]

    def apply():
        if change == "deactivate":
            member.is_active = False
            member.save()
        elif change == "delete membership":
            Membership.objects.get(user=member).delete()
        else:
            membership = Membership.objects.get(user=member)
            membership.tenant = other_tenant
            membership.save()

    await sync(apply)
    for comm in comms:
        assert await close_code(comm, WITHIN) == 4001
        await comm.disconnect()


async def test_a_demoted_member_stops_receiving_team_memories_at_once(member, make_user):
    author = await sync(make_user)
    comm = await connect(jwt_for(member), subscribe=["memories"])

    def demote_then_write():
        Membership.objects.filter(user=member).update(role=Role.MEMBER)  # no signal: nothing happens
        membership = Membership.objects.get(user=member)
        membership.role = Role.GUEST
        membership.save()
        MemoryFactory(owner=author, visibility=Visibility.TEAM, title="team")
        MemoryFactory(owner=author, visibility=Visibility.PUBLIC, title="public")

    await sync(demote_then_write)
    received = await frames(comm)
    assert [f["data"]["memory"]["title"] for f in received] == ["public"]
    assert await still_open(comm)
    await comm.disconnect()


async def test_changes_that_send_no_signal_are_caught_by_the_periodic_recheck(member, settings):
    settings.PUOMEMO_WS_REVALIDATE_SECONDS = 1
    comm = await connect(await sync(api_key, member))
    await sync(lambda: ApiKey.objects.filter(user=member).update(revoked_at="2026-01-01T00:00:00Z"))
    assert await close_code(comm, WITHIN) == 4001
    await comm.disconnect()


# Changes that send no signal, each as bulk tools and raw SQL make them: the triggers mark them and the
# log poll (PUOMEMO_EVENT_LOG_POLL_SECONDS, 1 s) re-checks the open sockets, long before the 30 s re-check.
def moved_by_update(user, other_tenant) -> None:
    Membership.objects.filter(user=user).update(tenant=other_tenant)


def deactivated_by_raw_sql(user, other_tenant) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE auth_user SET is_active = %s WHERE id = %s", [False, user.pk])


def key_revoked_by_raw_sql(user, other_tenant) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_apikey SET revoked_at = CURRENT_TIMESTAMP WHERE user_id = %s", [user.pk])


def membership_deleted_in_bulk(user, other_tenant) -> None:
    Membership.objects.filter(user=user).delete()


@pytest.mark.parametrize(
    "change", [moved_by_update, deactivated_by_raw_sql, key_revoked_by_raw_sql, membership_deleted_in_bulk]
)
async def test_access_lost_without_a_signal_closes_within_the_log_poll(member, other_tenant, settings, change):
    assert settings.PUOMEMO_WS_REVALIDATE_SECONDS == 30
    comm = await connect(await sync(api_key, member))
    assert await still_open(comm)
    changed = asyncio.get_running_loop().time()
    await sync(change, member, other_tenant)
    assert await close_code(comm, WITHIN) == 4001
    assert asyncio.get_running_loop().time() - changed < 2 * settings.PUOMEMO_EVENT_LOG_POLL_SECONDS + 1
    await comm.disconnect()


async def test_a_demotion_without_a_signal_stops_team_memories_within_the_log_poll(member, make_user, settings):
    author = await sync(make_user)
    comm = await connect(jwt_for(member), subscribe=["memories"])
    assert await still_open(comm)
    await sync(lambda: Membership.objects.filter(user=member).update(role=Role.GUEST))
    await asyncio.sleep(2 * settings.PUOMEMO_EVENT_LOG_POLL_SECONDS + 0.5)
    await sync(MemoryFactory, owner=author, visibility=Visibility.TEAM, title="team")
    await sync(MemoryFactory, owner=author, visibility=Visibility.PUBLIC, title="public")
    assert [f["data"]["memory"]["title"] for f in await frames(comm)] == ["public"]
    assert await still_open(comm)
    await comm.disconnect()


def test_logins_and_key_use_mark_no_access_change(member):
    """The columns that change on every login or API call are not watched: no re-check storm."""
    marked = access_marks()
    get_user_model().objects.filter(pk=member.pk).update(last_login="2026-01-02T00:00:00Z")
    assert api_key(member)  # a new key gives nobody access they did not have
    ApiKey.objects.filter(user=member).update(last_used_at="2026-01-02T00:00:00Z")
    assert access_marks() == marked
    Membership.objects.filter(user=member).update(role=Role.GUEST)
    assert access_marks() > marked
    assert prune_access_changes() >= 1 and access_marks()[1] > marked[1]


def test_a_change_that_commits_after_a_later_one_still_moves_the_marks(db):
    """Mark ids are taken when a change is made; one committed after a later change must still be seen."""
    AccessChangeMark.objects.create(id=1000)  # the later change, committed first
    seen = access_marks()
    AccessChangeMark.objects.create(id=990)  # the earlier change (a revoke), committed now
    assert access_marks() != seen and access_marks()[1] == seen[1] == 1000


async def test_a_password_change_closes_jwt_sockets_at_the_recheck_and_voids_their_tickets(member, settings):
    settings.PUOMEMO_WS_REVALIDATE_SECONDS = 1
    token, key = jwt_for(member), await sync(api_key, member)
    jwt_socket, key_socket = await connect(token), await connect(key)

    def change_password_and_issue():
        from accounts.principal import principal_from_token

        ticket = ticket_issue(principal=principal_from_token(token))[0]
        member.set_password("a new password 2")
        member.save()
        return ticket

    ticket = await sync(change_password_and_issue)
    assert await close_code(jwt_socket, WITHIN) == 4001
    assert await still_open(key_socket)  # API keys are revoked on their own
    late = WebsocketCommunicator(websocket_application(), f"/ws?ticket={ticket}")
    assert (await late.connect())[0]
    assert await close_code(late) == 4001
    for comm in (jwt_socket, key_socket, late):
        await comm.disconnect()


async def test_a_jwt_socket_closes_4001_when_the_token_expires(member):
    comm = await connect(await sync(short_jwt, member, 2))
    assert await still_open(comm)
    assert await close_code(comm, WITHIN) == 4001
    await comm.disconnect()


async def test_an_in_band_refresh_keeps_the_socket_open(member):
    comm = await connect(await sync(short_jwt, member, 2), subscribe=None)
    fresh = await sync(jwt_for, member)
    await comm.send_json_to({"type": "auth", "data": {"token": fresh}})
    reply = await comm.receive_json_from()
    assert reply["type"] == "authenticated"
    expected = AccessToken(fresh)["exp"]
    assert reply["data"]["expires_at"].endswith("Z")
    from datetime import datetime

    assert datetime.fromisoformat(reply["data"]["expires_at"]).timestamp() == expected
    await asyncio.sleep(2.5)
    assert await still_open(comm)
    await comm.disconnect()


async def test_an_api_key_never_expires_and_says_so(member):
    comm = await connect(await sync(api_key, member), subscribe=None)
    await comm.send_json_to({"type": "auth", "data": {"token": await sync(api_key, member)}})
    assert (await comm.receive_json_from())["data"] == {"expires_at": None}
    await comm.disconnect()


@pytest.mark.parametrize("whose", ["another user", "garbage"])
async def test_refreshing_with_a_token_of_someone_else_closes_4001(member, make_user, whose):
    comm = await connect(jwt_for(member), subscribe=None)
    token = jwt_for(await sync(make_user)) if whose == "another user" else "not-a-token"
    await comm.send_json_to({"type": "auth", "data": {"token": token}})
    assert await close_code(comm) == 4001
    await comm.disconnect()


async def test_auth_without_a_token_is_an_invalid_frame(member):
    comm = await connect(jwt_for(member), subscribe=None)
    await comm.send_json_to({"type": "auth", "data": {}})
    reply = await comm.receive_json_from()
    assert reply["type"] == "error" and "auth needs data.token" in reply["data"]["message"]
    assert await still_open(comm)
    await comm.disconnect()


async def test_a_ticket_opens_one_socket_once(member):
    ticket, _ = await sync(lambda: ticket_issue(principal=principal(member)))
    comm = WebsocketCommunicator(websocket_application(), f"/ws?ticket={ticket}")
    assert (await comm.connect())[0]
    assert await still_open(comm)
    again = WebsocketCommunicator(websocket_application(), f"/ws?ticket={ticket}")
    assert (await again.connect())[0]
    assert await close_code(again) == 4001
    await comm.disconnect()
    await again.disconnect()


async def test_a_ticket_of_a_jwt_expires_with_the_jwt(member):
    def issue():
        from accounts.principal import principal_from_token

        return ticket_issue(principal=principal_from_token(short_jwt(member, 2)))[0]

    comm = WebsocketCommunicator(websocket_application(), f"/ws?ticket={await sync(issue)}")
    assert (await comm.connect())[0]
    assert await still_open(comm)
    assert await close_code(comm, WITHIN) == 4001
    await comm.disconnect()


async def test_a_deactivated_user_cannot_connect_with_an_old_token(member):
    token = jwt_for(member)
    await sync(lambda: get_user_model().objects.filter(pk=member.pk).update(is_active=False))
    with pytest.raises(Refused) as refused:
        await connect(token)
    assert refused.value.code == 4001


async def test_logging_out_closes_that_sessions_sockets_at_once(member):
    """A logout ends its session's sockets now (not at the next re-check, 30 s away); other sessions stay."""

    def session_cookie() -> tuple[Client, str]:
        client = Client()
        client.force_login(member)
        return client, client.cookies["sessionid"].value

    (leaving, leaving_key), (_, staying_key) = await sync(session_cookie), await sync(session_cookie)

    async def socket(session_key: str) -> WebsocketCommunicator:
        headers = [
            (b"origin", b"http://localhost"),
            (b"host", b"localhost"),
            (b"cookie", f"sessionid={session_key}".encode()),
        ]
        comm = WebsocketCommunicator(websocket_application(), "/ws", headers=headers)
        assert (await comm.connect())[0]
        assert await still_open(comm)
        return comm

    ended, kept = await socket(leaving_key), await socket(staying_key)
    await sync(leaving.post, "/logout/")
    assert await close_code(ended, WITHIN) == 4001
    assert await still_open(kept)
    await ended.disconnect()
    await kept.disconnect()
