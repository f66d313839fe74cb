"""The /ws protocol with channels' WebsocketCommunicator: auth, replies, errors and limits."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.services import api_key_revoke
from realtime.routing import websocket_application
from tests.support.auth import jwt_for
from tests.support.factories import api_key
from tests.support.wsclient import Refused, close_code, connect, frames

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def member(make_user):
    return make_user()


@pytest.fixture
def token(member):
    return jwt_for(member)


@pytest.mark.parametrize("bad", ["", "nonsense", "pm_unknown", "a.b.c"])
async def test_bad_token_is_accepted_then_closed_with_4001(db, bad):
    with pytest.raises(Refused) as refused:
        await connect(bad, subscribe=None)
    assert refused.value.code == 4001


async def test_revoked_api_key_is_4001(member):
    key = await database_sync_to_async(api_key)(member)
    comm = await connect(key)
    await comm.disconnect()
    from accounts.models import ApiKey

    await database_sync_to_async(lambda: api_key_revoke(api_key=ApiKey.objects.get()))()
    with pytest.raises(Refused) as refused:
        await connect(key, subscribe=None)
    assert refused.value.code == 4001


async def test_envelope_and_replies(token):
    comm = await connect(token, subscribe=None)
    await comm.send_json_to({"type": "ping"})  # id and timestamp may be omitted
    pong = await comm.receive_json_from()
    assert set(pong) == {"id", "type", "timestamp", "data"}
    assert pong["type"] == "pong" and pong["timestamp"].endswith("Z") and "timestamp" in pong["data"]

    await comm.send_json_to({"id": "1", "type": "subscribe", "timestamp": "x", "data": {"channels": ["memories"]}})
    assert (await comm.receive_json_from())["data"] == {"channels": ["memories"]}
    await comm.send_json_to({"type": "subscribe", "data": {"channels": ["tenant.updates"]}})
    assert (await comm.receive_json_from())["data"] == {"channels": ["memories", "tenant.updates"]}
    await comm.send_json_to({"type": "unsubscribe", "data": {"channels": ["memories"]}})
    reply = await comm.receive_json_from()
    assert (reply["type"], reply["data"]) == ("unsubscribed", {"channels": ["tenant.updates"]})
    await comm.disconnect()


async def test_unknown_type_and_channel_are_errors_not_closes(token):
    comm = await connect(token, subscribe=None)
    await comm.send_json_to({"type": "dance"})
    assert (await comm.receive_json_from())["data"] == {"message": "Unknown message type: dance"}
    await comm.send_json_to({"type": "subscribe", "data": {"channels": ["memories", "secrets"]}})
    error = await comm.receive_json_from()
    assert error["type"] == "error" and "secrets" in error["data"]["message"]
    await comm.send_json_to({"type": "ping"})
    assert (await comm.receive_json_from())["type"] == "pong"
    await comm.disconnect()


async def test_persistent_invalid_frames_close_with_4003(token):
    comm = await connect(token, subscribe=None)
    invalid = ["not json", "[1, 2]", '{"type": 5}', '{"data": {}}']
    for text in invalid:
        await comm.send_to(text_data=text)
        reply = await comm.receive_json_from()
        assert (reply["type"], reply["data"]["message"]) == ("error", "Invalid message format")
    await comm.send_to(bytes_data=b"\x00binary")
    assert await close_code(comm) == 4003


async def test_rate_limit_drops_with_an_error_then_closes_4002(token, settings):
    settings.PUOMEMO_WS_RATE_LIMIT_PER_MINUTE = 5
    comm = await connect(token, subscribe=None)  # its ping is the first of five
    for _ in range(4):
        await comm.send_json_to({"type": "ping"})
        assert (await comm.receive_json_from())["type"] == "pong"
    await comm.send_json_to({"type": "ping"})
    error = await comm.receive_json_from()
    assert error["type"] == "error" and "Rate limit" in error["data"]["message"]
    assert 0 < error["data"]["retry_after"] <= 60
    for _ in range(4):
        await comm.send_json_to({"type": "ping"})
        assert (await comm.receive_json_from())["type"] == "error"
    await comm.send_json_to({"type": "ping"})
    assert await close_code(comm) == 4002


async def test_message_size_limit_is_1009(token, settings):
    settings.PUOMEMO_WS_MAX_MESSAGE_BYTES = 100
    comm = await connect(token, subscribe=None)
    exact = '{"type":"ping","data":"' + "x" * (100 - 25) + '"}'
    assert len(exact.encode()) == 100
    await comm.send_to(text_data=exact)
    assert (await comm.receive_json_from())["type"] == "pong"
    await comm.send_to(text_data=exact[:-2] + 'é"}')  # 101 bytes: é is two
    assert await close_code(comm) == 1009


async def test_idle_connection_closes_with_4008(token, settings):
    settings.PUOMEMO_WS_IDLE_TIMEOUT_SECONDS = 1
    comm = await connect(token, subscribe=None)
    assert await comm.receive_nothing(timeout=0.6)
    await comm.send_json_to({"type": "ping"})  # activity resets the timer
    assert (await comm.receive_json_from())["type"] == "pong"
    assert await comm.receive_nothing(timeout=0.6)
    assert await close_code(comm, timeout=2) == 4008


async def test_connection_caps_close_with_4029(make_user, settings):
    settings.PUOMEMO_WS_MAX_CONNECTIONS_PER_USER = 2
    settings.PUOMEMO_WS_MAX_CONNECTIONS_PER_TENANT = 3
    ann, bob = await database_sync_to_async(lambda: (make_user(), make_user()))()
    first = [await connect(jwt_for(ann), subscribe=None) for _ in range(2)]
    with pytest.raises(Refused) as refused:
        await connect(jwt_for(ann), subscribe=None)
    assert refused.value.code == 4029
    bobs = await connect(jwt_for(bob), subscribe=None)
    with pytest.raises(Refused) as refused:
        await connect(jwt_for(bob), subscribe=None)
    assert refused.value.code == 4029  # the tenant is full
    await first[0].disconnect()
    again = await connect(jwt_for(ann), subscribe=None)  # a slot came free
    for comm in (first[1], bobs, again):
        await comm.disconnect()


async def test_status_counts_connections(make_user, client_for):
    ann, bob = await database_sync_to_async(lambda: (make_user(), make_user()))()
    comms = [await connect(jwt_for(ann), subscribe=None) for _ in range(2)]
    comms.append(await connect(jwt_for(bob), subscribe=None))
    status = await database_sync_to_async(lambda: client_for(ann).get("/api/v4/ws/status").json())()
    assert status == {"user_connections": 2, "tenant_connections": 3, "total_connections": 3, "websocket_url": "/ws"}
    for comm in comms:
        await comm.disconnect()
    status = await database_sync_to_async(lambda: client_for(ann).get("/api/v4/ws/status").json())()
    assert status["total_connections"] == 0


async def test_presence_events_carry_the_connection_id(make_user):
    ann, bob = await database_sync_to_async(lambda: (make_user(first_name="Ann"), make_user()))()
    watcher = await connect(jwt_for(bob), subscribe=["tenant.updates"])
    comm = await connect(jwt_for(ann), subscribe=None)
    joined = (await frames(watcher))[0]
    assert joined["type"] == "tenant.user_joined"
    assert joined["data"]["user_id"] == str(ann.pk) and joined["data"]["user_name"] == "Ann"
    await comm.disconnect()
    left = (await frames(watcher))[0]
    assert (left["type"], left["data"]) == ("tenant.user_left", joined["data"])
    await watcher.disconnect()


async def test_browser_origin_must_be_allowed(token, settings):
    settings.PUOMEMO_WS_ALLOWED_ORIGINS = ["app.example.com"]
    evil = WebsocketCommunicator(
        websocket_application(), f"/ws?token={token}", headers=[(b"origin", b"http://evil.test")]
    )
    assert (await evil.connect())[0] is False
    good = await connect(token, subscribe=None, headers=[(b"origin", b"https://app.example.com")])
    await good.disconnect()


async def test_a_client_that_stops_reading_is_dropped(token, settings, monkeypatch):
    from realtime.consumers import MemoryConsumer

    settings.PUOMEMO_WS_OUTBOUND_QUEUE = 2
    stuck = asyncio.Event()

    async def never_completes(self, text_data=None, bytes_data=None, close=False):
        await stuck.wait()

    comm = await connect(token)
    monkeypatch.setattr(MemoryConsumer, "send", never_completes)
    for _ in range(4):
        await comm.send_json_to({"type": "ping"})
    assert await close_code(comm) == 1013


def _metric(client, name: str) -> float:
    for line in client.get("/metrics").content.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_connections_frames_and_closes(token, client):
    def read():
        return {
            name: _metric(client, name)
            for name in (
                "puomemo_websocket_connections",
                "puomemo_websocket_messages_sent_total",
                "puomemo_websocket_messages_received_total",
                'puomemo_websocket_closes_total{code="4003"}',
            )
        }

    before = await database_sync_to_async(read)()
    comm = await connect(token, subscribe=None)
    during = await database_sync_to_async(read)()
    assert during["puomemo_websocket_connections"] == before["puomemo_websocket_connections"] + 1
    assert (
        during["puomemo_websocket_messages_received_total"] == before["puomemo_websocket_messages_received_total"] + 1
    )
    assert during["puomemo_websocket_messages_sent_total"] == before["puomemo_websocket_messages_sent_total"] + 1
    for _ in range(5):
        await comm.send_to(text_data="nope")
    assert await close_code(comm) == 4003
    await comm.disconnect()
    after = await database_sync_to_async(read)()
    assert after["puomemo_websocket_connections"] == before["puomemo_websocket_connections"]
    assert (
        after['puomemo_websocket_closes_total{code="4003"}']
        == before['puomemo_websocket_closes_total{code="4003"}'] + 1
    )
