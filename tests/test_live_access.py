"""Access on two real daphne processes: changes made on one instance (or by a shell) reach sockets on the other."""

import asyncio
import json
import signal
import subprocess
import sys
import time

import pytest
import websockets

from tests.support.live import ROOT, api, close_code, next_of_type, ready

pytestmark = pytest.mark.live

# The bound for a change to close open sockets, on every instance.
WITHIN = 5
REFRESH = 1

USERS = {
    "alice": ("live", "admin"),
    "bob": ("live", "member"),
    "carol": ("live", "guest"),
    "dan": ("live", "member"),
    "erin": ("live", "member"),
    "fay": ("live", "admin"),
}


@pytest.fixture(scope="module")
def live(cluster_factory):
    # Registry entries of a dead process expire after three refreshes: 3 s here rather than 30.
    cluster = cluster_factory("access", users=USERS, settings={"PUOMEMO_WS_REGISTRY_REFRESH_SECONDS": str(REFRESH)})
    a, b = cluster.servers
    return {"a": a, "b": b, "keys": cluster.keys, "env": cluster.env, "cluster": cluster}


def shell(env: dict, code: str) -> None:
    """Run Python in `manage.py shell`, as an operator would."""
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


async def closed_within(ws, seconds: float) -> int:
    started = time.monotonic()
    code = await asyncio.wait_for(close_code(ws), seconds + 1)
    assert time.monotonic() - started <= seconds
    return code


async def subscribed(server, key: str):
    ws = await ready(server.ws, key)
    await ws.send(json.dumps({"type": "subscribe", "data": {"channels": ["memories"]}}))
    await next_of_type(ws, "subscribed")
    return ws


async def test_revoking_a_key_on_a_closes_its_socket_on_b(live):
    a, b = live["a"], live["b"]
    status, created = await asyncio.to_thread(api, a, "POST", "/api/v4/api-keys/", live["keys"]["bob"], {"name": "x"})
    assert status == 201
    on_b = await ready(b.ws, created["key"])
    status, _ = await asyncio.to_thread(api, a, "DELETE", f"/api/v4/api-keys/{created['id']}/", live["keys"]["bob"])
    assert status == 204
    assert await closed_within(on_b, WITHIN) == 4001


async def test_a_user_deactivated_in_a_shell_is_closed_on_both_instances(live):
    sockets = [await ready(server.ws, live["keys"]["dan"]) for server in (live["a"], live["b"])]
    code = "from django.contrib.auth.models import User; u = User.objects.get(username='dan'); "
    code += "u.is_active = False; u.save()"
    await asyncio.to_thread(shell, live["env"], code)
    for ws in sockets:
        assert await closed_within(ws, WITHIN) == 4001


async def test_a_role_change_refilters_the_next_events_on_another_instance(live):
    a, b, keys = live["a"], live["b"], live["keys"]
    erin_on_b = await subscribed(b, keys["erin"])
    code = "from accounts.models import Membership; m = Membership.objects.get(user__username='erin'); "
    code += "m.role = 'guest'; m.save()"
    await asyncio.to_thread(shell, live["env"], code)
    for title, visibility in [("team news", "team"), ("public news", "public")]:
        body = {"title": title, "visibility": visibility}
        assert (await asyncio.to_thread(api, a, "POST", "/api/v4/memories/", keys["alice"], body))[0] == 201
    event = await asyncio.wait_for(next_of_type(erin_on_b, "memory.created"), 10)
    assert event["data"]["memory"]["title"] == "public news"  # the team memory never arrived
    await erin_on_b.close()


async def test_visibility_transitions_over_real_daphne(live):
    a, b, keys = live["a"], live["b"], live["keys"]
    status, memory = await asyncio.to_thread(
        api, a, "POST", "/api/v4/memories/", keys["bob"], {"title": "plan", "visibility": "team"}
    )
    assert status == 201
    admin, guest = await subscribed(b, keys["fay"]), await subscribed(b, keys["carol"])
    url = f"/api/v4/memories/{memory['id']}/"

    async def change(visibility: str) -> None:
        body = {"visibility": visibility}
        assert (await asyncio.to_thread(api, a, "PATCH", url, keys["bob"], body))[0] == 200

    async def next_memory_frame(ws) -> tuple:
        frame = await asyncio.wait_for(next_of_type(ws, "memory."), 10)
        return frame["type"], frame["data"].get("reason")

    await change("private")
    assert await next_memory_frame(admin) == ("memory.deleted", "visibility")
    await change("public")
    assert await next_memory_frame(admin) == ("memory.created", None)
    assert await next_memory_frame(guest) == ("memory.created", None)
    await change("team")
    assert await next_memory_frame(admin) == ("memory.updated", None)
    assert await next_memory_frame(guest) == ("memory.deleted", "visibility")
    for ws in (admin, guest):
        await ws.close()


async def test_a_ticket_from_a_works_once_on_b_and_is_never_logged(live):
    a, b = live["a"], live["b"]
    status, body = await asyncio.to_thread(api, a, "POST", "/api/v4/ws/ticket", live["keys"]["bob"])
    assert status == 201
    async with websockets.connect(f"{b.ws}?ticket={body['ticket']}") as ws:
        await ws.send('{"type": "ping"}')
        assert json.loads(await ws.recv())["type"] == "pong"
    async with websockets.connect(f"{a.ws}?ticket={body['ticket']}") as again:
        assert await close_code(again) == 4001
    for server in (a, b):
        assert body["ticket"] not in server.log.read_text()


async def presence(ws) -> dict[str, int]:
    await ws.send('{"type": "presence"}')
    return {user["user_name"]: user["connections"] for user in (await next_of_type(ws, "presence"))["data"]["users"]}


async def test_presence_is_the_same_on_both_instances_and_a_killed_ones_users_leave(live):
    a, b, keys = live["a"], live["b"], live["keys"]
    on_a, on_b = await ready(a.ws, keys["alice"]), await ready(b.ws, keys["bob"])
    for ws in (on_a, on_b):
        await ws.send(json.dumps({"type": "subscribe", "data": {"channels": ["tenant.updates"]}}))
        await next_of_type(ws, "subscribed")
    c = live["cluster"].start_server("server-c")
    on_c = await ready(c.ws, keys["fay"])
    expected = {"alice": 1, "bob": 1, "fay": 1}
    assert await presence(on_a) == expected
    assert await presence(on_b) == expected
    c.process.send_signal(signal.SIGKILL)  # no cleanup at all: its entries must expire
    c.process.wait()
    killed_at = time.monotonic()
    # Both instances' clients are told, once each, within the registry's TTL and one refresh.
    for ws in (on_a, on_b):
        left = await asyncio.wait_for(next_of_type(ws, "tenant.user_left"), 3 * REFRESH + REFRESH + 5)
        assert left["data"]["user_name"] == "fay"
    assert time.monotonic() - killed_at < 3 * REFRESH + REFRESH + 5
    assert await presence(on_a) == await presence(on_b) == {"alice": 1, "bob": 1}
    with pytest.raises(TimeoutError):  # one process reaped fay's entry: no second user_left
        await asyncio.wait_for(next_of_type(on_a, "tenant.user_left"), 3 * REFRESH)
    await on_c.close()
    for ws in (on_a, on_b):
        await ws.close()


async def test_typing_on_a_reaches_a_teammate_on_b(live):
    a, b, keys = live["a"], live["b"], live["keys"]
    status, memory = await asyncio.to_thread(
        api, a, "POST", "/api/v4/memories/", keys["alice"], {"title": "agenda", "visibility": "team"}
    )
    assert status == 201
    typist = await ready(a.ws, keys["alice"])
    teammate = await subscribed(b, keys["bob"])
    await typist.send(json.dumps({"type": "typing", "data": {"memory_id": memory["id"]}}))
    frame = await asyncio.wait_for(next_of_type(teammate, "memory.typing"), 10)
    assert (frame["data"]["memory_id"], frame["data"]["user_name"]) == (memory["id"], "alice")
    for ws in (typist, teammate):
        await ws.close()
