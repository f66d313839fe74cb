"""Custom events: relayed to the tenant's `custom` subscribers who may see them; validated and rate limited."""

import asyncio
import json
import time

import msgpack
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction

from accounts.models import Role
from accounts.principal import Actor
from memories.models import Visibility
from realtime import delivery
from realtime.custom import InvalidCustomEvent, PublishRateExceeded, check_publish, publish_custom
from realtime.limits import SlidingWindow
from realtime.routing import websocket_application
from tests.support.auth import jwt_for
from tests.support.factories import MemoryFactory, principal
from tests.support.live import api, next_of_type, ready
from tests.support.wsclient import close_code, connect, frames

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOM = ["custom"]
MSGPACK = "puomemo.msgpack"


def sync(fn, *args, **kwargs):
    return database_sync_to_async(fn)(*args, **kwargs)


def publish_frame(event="custom.cursor", payload=None, memory_id=None) -> dict:
    data = {"event": event, "payload": {"x": 1} if payload is None else payload}
    if memory_id is not None:
        data["memory_id"] = memory_id
    return {"type": "publish", "data": data}


@pytest.fixture
def team(make_user):
    """Ann (member), Bob (member), Gus (guest) of one tenant."""
    return make_user(first_name="Ann"), make_user(first_name="Bob"), make_user(Role.GUEST, first_name="Gus")


async def disconnect(*comms) -> None:
    for comm in comms:
        await comm.disconnect()


async def test_a_custom_event_reaches_the_tenants_other_custom_subscribers_only(team, make_user, other_tenant):
    ann, bob, gus = team
    outsider_user = await sync(make_user, in_tenant=other_tenant)
    sender = await connect(jwt_for(ann), subscribe=CUSTOM)
    other_tab = await connect(jwt_for(ann), subscribe=CUSTOM)
    teammate = await connect(jwt_for(bob), subscribe=CUSTOM)
    guest = await connect(jwt_for(gus), subscribe=CUSTOM)
    memories_only = await connect(jwt_for(bob), subscribe=["memories", "tenant.updates"])
    left = await connect(jwt_for(bob), subscribe=CUSTOM)
    await left.send_json_to({"type": "unsubscribe", "data": {"channels": CUSTOM}})
    assert (await left.receive_json_from())["data"] == {"channels": []}
    outsider = await connect(jwt_for(outsider_user), subscribe=CUSTOM)
    await frames(memories_only)  # the others' tenant.user_joined

    await sender.send_json_to(publish_frame("custom.cursor.moved", {"line": 3, "nested": {"a": [1, None]}}))
    expected = {
        "event": "custom.cursor.moved",
        "payload": {"line": 3, "nested": {"a": [1, None]}},
        "memory_id": None,
        "user_id": str(ann.pk),
        "user_name": "Ann",
    }
    for comm in (other_tab, teammate, guest):  # without memory_id: everyone in the tenant, guests too
        [frame] = await frames(comm)
        assert set(frame) == {"id", "type", "timestamp", "data"}  # no seq: not logged
        assert (frame["type"], frame["data"]) == ("custom.cursor.moved", expected)
    assert await frames(sender) == []  # never echoed to the connection that published it
    assert await frames(memories_only) == []
    assert await frames(left) == []
    assert await frames(outsider) == []
    await disconnect(sender, other_tab, teammate, guest, memories_only, left, outsider)


async def test_with_a_memory_id_only_those_who_may_see_the_memory_get_it(team):
    ann, bob, gus = team
    private, team_memory, public = [
        await sync(MemoryFactory, owner=ann, visibility=visibility)
        for visibility in (Visibility.PRIVATE, Visibility.TEAM, Visibility.PUBLIC)
    ]
    sender = await connect(jwt_for(ann), subscribe=CUSTOM)
    other_tab = await connect(jwt_for(ann), subscribe=CUSTOM)
    teammate = await connect(jwt_for(bob), subscribe=CUSTOM)
    guest = await connect(jwt_for(gus), subscribe=CUSTOM)
    receivers = {"other_tab": other_tab, "teammate": teammate, "guest": guest}
    expected = {
        private: {"other_tab"},
        team_memory: {"other_tab", "teammate"},
        public: {"other_tab", "teammate", "guest"},
    }
    for memory, who in expected.items():
        # Any spelling of the id reaches receivers in one.
        await sender.send_json_to(publish_frame("custom.selected", {"v": 1}, memory.id.hex.upper()))
        for name, comm in receivers.items():
            got = await frames(comm)
            if name in who:
                assert [f["data"]["memory_id"] for f in got] == [str(memory.id)], (memory.visibility, name)
            else:
                assert got == [], (memory.visibility, name)
        assert await frames(sender) == []
    await disconnect(sender, *receivers.values())


@pytest.mark.parametrize("target", ["private", "other tenant", "missing", "not-a-uuid", "number"])
async def test_a_memory_the_sender_may_not_see_is_an_error_and_nothing_is_relayed(
    team, make_user, other_tenant, target
):
    ann, bob, _gus = team

    def memory_id():
        if target == "private":
            return str(MemoryFactory(owner=bob, visibility=Visibility.PRIVATE).id)
        if target == "other tenant":
            return str(MemoryFactory(owner=make_user(in_tenant=other_tenant), visibility=Visibility.PUBLIC).id)
        return {"missing": "00000000-0000-0000-0000-000000000000", "not-a-uuid": "nope", "number": 7}[target]

    target_id = await sync(memory_id)
    sender = await connect(jwt_for(ann), subscribe=None)
    watcher = await connect(jwt_for(bob), subscribe=CUSTOM)
    await sender.send_json_to(publish_frame(memory_id=target_id))
    reply = await sender.receive_json_from()
    if target in ("not-a-uuid", "number"):
        message = "Invalid custom event: data.memory_id must be a memory's id"
    else:
        message = f"Unknown memory: {target_id}"
    assert (reply["type"], reply["data"]) == ("error", {"message": message})
    assert await frames(watcher) == []
    await disconnect(sender, watcher)


BAD_NAMES = [
    "custom",
    "custom.",
    "custom.Cursor",
    "custom._x",
    "custom.-x",
    "custom..x",
    "custom.a b",
    "custom.é",
    "custom." + "a" * 65,
    "Custom.x",
    "memory.created",
    "custom.x\n",
    "",
    5,
    None,
    ["custom.x"],
]
GOOD_NAMES = ["custom.a", "custom.0", "custom.cursor-moved_v2.x", "custom." + "a" * 64]


async def test_event_names_are_validated(team):
    ann, bob, _gus = team
    sender = await connect(jwt_for(ann), subscribe=None)
    watcher = await connect(jwt_for(bob), subscribe=CUSTOM)
    for name in BAD_NAMES:
        await sender.send_json_to(publish_frame(name))
        reply = await sender.receive_json_from()
        assert reply["type"] == "error", name
        assert reply["data"]["message"].startswith("Invalid custom event name"), name
    assert await frames(watcher) == []  # nothing relayed
    for name in GOOD_NAMES:
        await sender.send_json_to(publish_frame(name))
    assert [f["type"] for f in await frames(watcher)] == GOOD_NAMES
    assert await frames(sender) == []
    await disconnect(sender, watcher)


async def test_payload_size_is_limited(team):
    ann, bob, _gus = team
    sender = await connect(jwt_for(ann), subscribe=None)
    watcher = await connect(jwt_for(bob), subscribe=CUSTOM)
    limit = 16_384  # the default; measured as compact JSON: {"t":"…"} is 8 bytes around the text
    await sender.send_json_to(publish_frame(payload={"t": "x" * (limit - 8)}))
    [frame] = await frames(watcher)
    assert len(frame["data"]["payload"]["t"]) == limit - 8
    await sender.send_json_to(publish_frame(payload={"t": "x" * (limit - 7)}))
    reply = await sender.receive_json_from()
    assert (reply["type"], reply["data"]) == (
        "error",
        {"message": f"Custom event payload is larger than {limit} bytes"},
    )
    assert await frames(watcher) == []
    await disconnect(sender, watcher)


async def test_a_payload_that_is_not_an_object_is_an_error_but_not_an_invalid_frame(team, settings):
    ann, bob, _gus = team
    sender = await connect(jwt_for(ann), subscribe=None)
    watcher = await connect(jwt_for(bob), subscribe=CUSTOM)
    bad = [[1, 2], "text", 3, None, True]
    assert len(bad) >= settings.PUOMEMO_WS_INVALID_LIMIT_PER_MINUTE  # would close with 4003 if they counted
    for payload in bad:
        frame = publish_frame()
        frame["data"]["payload"] = payload
        await sender.send_json_to(frame)
        reply = await sender.receive_json_from()
        assert reply["data"] == {"message": "Invalid custom event: data.payload must be an object"}, payload
    await sender.send_json_to({"type": "publish", "data": {"event": "custom.x"}})  # no payload at all
    assert (await sender.receive_json_from())["data"]["message"].endswith("data.payload must be an object")
    assert await frames(watcher) == []
    await sender.send_json_to(publish_frame())
    assert len(await frames(watcher)) == 1  # still open, still publishing
    await disconnect(sender, watcher)


async def test_msgpack_and_json_connections_publish_to_each_other_and_only_json_payloads_pass(team):
    ann, bob, _gus = team
    packed = WebsocketCommunicator(websocket_application(), f"/ws?token={jwt_for(ann)}", subprotocols=[MSGPACK])
    assert await packed.connect() == (True, MSGPACK)
    await packed.send_to(bytes_data=msgpack.packb({"type": "subscribe", "data": {"channels": CUSTOM}}))
    assert msgpack.unpackb((await packed.receive_output(5))["bytes"])["type"] == "subscribed"
    plain = await connect(jwt_for(bob), subscribe=CUSTOM)

    await packed.send_to(bytes_data=msgpack.packb(publish_frame("custom.from-msgpack", {"n": [1.5, "é"]})))
    [frame] = await frames(plain)
    assert (frame["type"], frame["data"]["payload"]) == ("custom.from-msgpack", {"n": [1.5, "é"]})
    await plain.send_json_to(publish_frame("custom.from-json", {"ok": True}))
    frame = msgpack.unpackb((await packed.receive_output(5))["bytes"])
    assert (frame["type"], frame["data"]["payload"], "seq" in frame) == ("custom.from-json", {"ok": True}, False)

    not_json = [{"b": b"\x00"}, {b"key": 1}, {"t": msgpack.Timestamp(0)}, {"x": float("nan")}]
    for payload in not_json:
        await packed.send_to(bytes_data=msgpack.packb(publish_frame(payload=payload)))
        reply = msgpack.unpackb((await packed.receive_output(5))["bytes"])
        assert reply["data"] == {"message": "Invalid custom event: data.payload must be a JSON object"}, payload
    await plain.send_to(text_data=json.dumps(publish_frame(payload={"x": float("inf")})))  # Python writes Infinity
    assert (await plain.receive_json_from())["data"]["message"].endswith("must be a JSON object")
    assert await frames(plain) == []
    await disconnect(packed, plain)


async def test_publish_data_that_is_not_an_object_is_an_invalid_frame(team, settings):
    ann, bob, _gus = team
    settings.PUOMEMO_WS_INVALID_LIMIT_PER_MINUTE = 3
    sender = await connect(jwt_for(ann), subscribe=None)
    watcher = await connect(jwt_for(bob), subscribe=CUSTOM)
    for data in ("custom.x", ["custom.x"]):
        await sender.send_json_to({"type": "publish", "data": data})
        reply = await sender.receive_json_from()
        assert (reply["type"], reply["data"]) == (
            "error",
            {"message": "Invalid message format: publish needs data.event and data.payload"},
        )
    await sender.send_json_to({"type": "publish"})
    assert await close_code(sender) == 4003  # the third invalid frame in a minute
    assert await frames(watcher) == []
    await watcher.disconnect()


async def test_publishing_is_rate_limited_per_connection(team, settings):
    ann, bob, _gus = team
    settings.PUOMEMO_CUSTOM_RATE_PER_MINUTE = 3
    sender = await connect(jwt_for(ann), subscribe=None)
    other_tab = await connect(jwt_for(ann), subscribe=None)
    watcher = await connect(jwt_for(bob), subscribe=CUSTOM)
    for i in range(5):
        await sender.send_json_to(publish_frame(payload={"i": i}))
    replies = await frames(sender)
    assert [r["type"] for r in replies] == ["error", "error"]
    for reply in replies:
        assert reply["data"]["message"].startswith("Custom event rate limit exceeded; retry after")
        assert 0 < reply["data"]["retry_after"] <= 60
    assert [f["data"]["payload"]["i"] for f in await frames(watcher)] == [0, 1, 2]
    await other_tab.send_json_to(publish_frame(payload={"i": "tab"}))  # the limit is the connection's
    assert [f["data"]["payload"]["i"] for f in await frames(watcher)] == ["tab"]
    await disconnect(sender, other_tab, watcher)


async def test_a_refused_publish_does_not_count_against_the_window(team, settings):
    settings.PUOMEMO_CUSTOM_RATE_PER_MINUTE = 2
    viewer = await sync(principal, team[0])
    window = SlidingWindow(seconds=1.0)
    data = publish_frame()["data"]
    check_publish(viewer, data, window)
    check_publish(viewer, data, window)
    await asyncio.sleep(0.5)
    for _ in range(3):
        with pytest.raises(PublishRateExceeded):
            check_publish(viewer, data, window)
    await asyncio.sleep(0.6)  # the first two have left the window, the refused ones would not have
    check_publish(viewer, data, window)
    check_publish(viewer, data, window)  # two again: the three refused ones took no room
    with pytest.raises(PublishRateExceeded):
        check_publish(viewer, data, window)


async def test_guests_may_not_publish_unless_the_setting_allows_it(team, settings):
    ann, _bob, gus = team
    guest = await connect(jwt_for(gus), subscribe=None)
    watcher = await connect(jwt_for(ann), subscribe=CUSTOM)
    await guest.send_json_to(publish_frame())
    reply = await guest.receive_json_from()
    assert (reply["type"], reply["data"]) == ("error", {"message": "Guests may not publish custom events"})
    assert await frames(watcher) == []
    settings.PUOMEMO_CUSTOM_ALLOW_GUESTS = True
    await guest.send_json_to(publish_frame("custom.hello"))
    [frame] = await frames(watcher)
    assert (frame["type"], frame["data"]["user_name"]) == ("custom.hello", "Gus")
    assert await frames(guest) == []
    await disconnect(guest, watcher)


async def test_server_code_publishes_to_those_who_may_see_the_memory_once_its_transaction_commits(team):
    ann, bob, gus = team
    private = await sync(MemoryFactory, owner=ann, visibility=Visibility.PRIVATE)
    owner = await connect(jwt_for(ann), subscribe=CUSTOM)
    teammate = await connect(jwt_for(bob), subscribe=CUSTOM)
    guest = await connect(jwt_for(gus), subscribe=CUSTOM)
    actor = Actor(user_id=0, user_name="importer")

    def write(memory, event, *, fail=False):
        with transaction.atomic():
            memory.refresh_from_db()
            memory.title = "touched"
            memory.save()
            publish_custom(tenant_id=memory.tenant_id, event=event, payload={"ok": True}, actor=actor, memory=memory)
            if fail:
                raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await sync(write, private, "custom.import.failed", fail=True)
    await sync(write, private, "custom.import.done")
    [frame] = await frames(owner)  # only the committed one
    assert (frame["type"], frame["data"]) == (
        "custom.import.done",
        {
            "event": "custom.import.done",
            "payload": {"ok": True},
            "memory_id": str(private.id),
            "user_id": "0",
            "user_name": "importer",
        },
    )
    assert await frames(teammate) == [] and await frames(guest) == []

    await sync(publish_custom, tenant_id=private.tenant_id, event="custom.tick", payload={}, actor=actor)
    for comm in (owner, teammate, guest):  # outside a transaction, at once; without a memory, to everyone
        assert [f["type"] for f in await frames(comm)] == ["custom.tick"]
    with pytest.raises(InvalidCustomEvent):
        await sync(publish_custom, tenant_id=private.tenant_id, event="tick", payload={}, actor=actor)
    with pytest.raises(ValueError, match="another tenant"):
        await sync(
            publish_custom, tenant_id=private.tenant_id + 1, event="custom.x", payload={}, actor=actor, memory=private
        )
    await disconnect(owner, teammate, guest)


async def test_a_custom_event_published_during_a_resume_follows_the_replay_once(team, monkeypatch):
    ann, bob, _gus = team
    memories = [await sync(MemoryFactory, owner=ann) for _ in range(3)]
    resuming = await connect(jwt_for(bob), subscribe=["memories", "custom"])
    sender = await connect(jwt_for(ann), subscribe=None)
    replay = delivery.replay

    def slow_replay(*args, **kwargs):
        time.sleep(0.5)  # the real replay, late enough that the custom event comes while it runs
        return replay(*args, **kwargs)

    monkeypatch.setattr(delivery, "replay", slow_replay)
    await resuming.send_json_to({"type": "resume", "data": {"last_seq": 0}})
    await asyncio.sleep(0.2)
    await sender.send_json_to(publish_frame("custom.during", {}, str(memories[0].id)))  # held: it has no seq
    got = [(f["type"], f.get("seq")) for f in await frames(resuming, quiet=1.0)]
    assert got[:4] == [("memory.created", 1), ("memory.created", 2), ("memory.created", 3), ("resumed", None)]
    assert got[4:] == [("custom.during", None)]
    await disconnect(resuming, sender)


# --- Across two real server processes sharing Redis ---------------------------

LIVE_USERS = {"alice": ("live", "member"), "bob": ("live", "member"), "gil": ("live", "guest")}


@pytest.fixture
def cluster(cluster_factory):
    return cluster_factory("custom-events", users=LIVE_USERS, count=2)


async def custom_subscriber(url: str, key: str):
    ws = await ready(url, key)
    await ws.send(json.dumps({"type": "subscribe", "data": {"channels": ["custom"]}}))
    await next_of_type(ws, "subscribed")
    return ws


@pytest.mark.live
async def test_a_custom_event_published_on_one_instance_reaches_subscribers_on_the_other(cluster):
    a, b = cluster.servers
    keys = cluster.keys
    status, memory = await asyncio.to_thread(
        api, a, "POST", "/api/v4/memories/", keys["alice"], {"title": "agenda", "visibility": "team"}
    )
    assert status == 201
    sender = await custom_subscriber(a.ws, keys["alice"])
    alice_on_a = await custom_subscriber(a.ws, keys["alice"])
    alice_on_b = await custom_subscriber(b.ws, keys["alice"])
    bob_on_b = await custom_subscriber(b.ws, keys["bob"])
    guest_on_b = await custom_subscriber(b.ws, keys["gil"])
    await sender.send(json.dumps(publish_frame("custom.cursor", {"line": 7}, memory["id"])))
    await sender.send(json.dumps(publish_frame("custom.bell", {})))  # for the whole tenant
    for ws in (alice_on_a, alice_on_b, bob_on_b):
        first = await asyncio.wait_for(next_of_type(ws, "custom."), 10)
        assert (first["type"], first["data"]["memory_id"], first["data"]["payload"]) == (
            "custom.cursor",
            memory["id"],
            {"line": 7},
        )
        assert first["data"]["user_name"] == "alice"
        assert (await asyncio.wait_for(next_of_type(ws, "custom."), 10))["type"] == "custom.bell"
    # The guest may not see the team memory: its first custom event is the tenant-wide one, sent after.
    assert (await asyncio.wait_for(next_of_type(guest_on_b, "custom."), 10))["type"] == "custom.bell"
    # Its process offered both to the sender when alice_on_a got them; it sent neither: its next frame is a pong.
    await sender.send(json.dumps({"type": "ping"}))
    assert json.loads(await asyncio.wait_for(sender.recv(), 10))["type"] == "pong"
    for ws in (sender, alice_on_a, alice_on_b, bob_on_b, guest_on_b):
        await ws.close()


async def test_a_payload_msgpack_cannot_carry_is_refused_not_dropped(team):
    """JSON allows integers of any size; MessagePack (the Redis layer, msgpack clients) stops at 64 bits."""
    ann, bob, _gus = team
    sender = await connect(jwt_for(ann), subscribe=None)
    watcher = await connect(jwt_for(bob), subscribe=CUSTOM)
    for number in (2**64, -(2**63) - 1):
        frame = publish_frame()
        frame["data"]["payload"] = {"n": number}
        await sender.send_json_to(frame)
        assert (await sender.receive_json_from())["data"] == {
            "message": "Invalid custom event: data.payload must be a JSON object"
        }
    assert await frames(watcher) == []
    await disconnect(sender, watcher)
