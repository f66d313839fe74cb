"""The JS client (clients/js/) against a real daphne process and Redis."""

import asyncio
import json
import os
import shutil
import time
from datetime import datetime

import pytest

from clients.python.puomemo_client import jwt_expiry
from tests.live import ROOT, api, start_cluster
from tests.test_clients import SECRET, USERS, create_memory, event_log, login, mint


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("js-client"), users=USERS, settings={"SECRET_KEY": SECRET}, count=1)
    try:
        yield {"server": cluster.servers[0], "keys": cluster.keys}
    finally:
        cluster.stop()


async def test_the_js_client_against_a_live_server(live):
    node = shutil.which("node")
    assert node, "node is not installed (.ci/run installs nodejs)"
    server, keys = live["server"], live["keys"]
    status, doomed = await asyncio.to_thread(api, server, "POST", "/api/v4/api-keys/", keys["bob"], {"name": "js"})
    assert status == 201
    env = {**os.environ, "WS_URL": server.ws, "HTTP_URL": server.http, "BOB_KEY": keys["bob"]}
    template = login(server, "alice")
    short_tokens = [mint(template, 4), mint(template, 60)]  # the provider's: the first expires during the run
    env.update(DOOMED_KEY=doomed["key"], SHORT_TOKENS=json.dumps(short_tokens))
    process = await asyncio.create_subprocess_exec(
        node,
        "--experimental-websocket",
        "--no-warnings",
        str(ROOT / "tests" / "js" / "client_check.mjs"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    lines: list[dict] = []
    try:
        while not lines or lines[-1].get("step") not in ("done", "timeout"):
            raw = await asyncio.wait_for(process.stdout.readline(), 30)
            assert raw, (await process.stderr.read()).decode()
            lines.append(json.loads(raw))
            step = lines[-1].get("step")
            if step == "ready":
                memory = await create_memory(server, keys["alice"], "for the js client")
            elif step == "revoke":
                path = f"/api/v4/api-keys/{doomed['id']}/"
                assert (await asyncio.to_thread(api, server, "DELETE", path, keys["bob"]))[0] == 204
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    steps = {line["step"]: line for line in lines if "step" in line}
    received = {line["type"]: line["data"] for line in lines if line.get("client") == "bob"}
    assert received["memory.created"]["memory"]["id"] == memory["id"]
    assert (steps["typing"]["first"], steps["typing"]["second"]) == (True, False)
    assert (received["memory.typing"]["memory_id"], received["memory.typing"]["user_name"]) == (memory["id"], "alice")
    users = {user["user_name"]: user["connections"] for user in steps["presence"]["users"]}
    assert set(users) == {"alice", "bob"} and users["bob"] >= 2  # bob's key and the doomed key
    expires_in = datetime.fromisoformat(steps["refresh"]["expires_at"]).timestamp() - time.time()
    assert steps["refresh"]["expires_at"].endswith("Z") and 25 * 60 < expires_in <= 30 * 60
    assert [(c["code"], c["reconnect"]) for c in steps["done"]["doomed_closes"]] == [(4001, False)]
    assert steps["done"]["doomed_close_code"] == 4001
    short = steps["done"]["short"]  # renewed in-band before its first token expired, and still connected
    assert [event["type"] for event in short["events"]] == ["authenticated"] and short["connected"]
    assert short["events"][0]["at"] < short["first_expiry"] == jwt_expiry(short_tokens[0]) * 1000
    assert datetime.fromisoformat(short["events"][0]["data"]["expires_at"]).timestamp() == jwt_expiry(short_tokens[1])
    # Cut by the server (4002) while memories were written, the client resumed: each event bob may see, once, in order.
    resume = steps["resume"]
    assert [(c["code"], c["reconnect"]) for c in resume["closes"]] == [(4002, True)]
    log = await event_log(server, keys["bob"], resume["start_seq"])
    assert [(e["type"], e["seq"], e["id"]) for e in resume["received"]] == [
        (frame["type"], frame["seq"], frame["data"]["memory"]["id"]) for frame in log["events"]
    ]
    titles = [frame["data"]["memory"]["title"] for frame in log["events"]]
    assert titles == ["js-before", "js-gap", "js-gap-2", "js-after"]
    alice_view = (await event_log(server, keys["alice"], resume["start_seq"]))["events"]
    hidden_seq = next(f["seq"] for f in alice_view if f["data"]["memory"]["id"] == resume["hidden_id"])
    assert [r["last_seq"] for r in resume["resumed"]] == [hidden_seq]  # past the gap's event bob may not see
    assert resume["last_seq"] == log["current_seq"] == log["events"][-1]["seq"]
