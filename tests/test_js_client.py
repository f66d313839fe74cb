"""The JS client (clients/js/): its unit tests under `node --test`, and a run against a real daphne process."""

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from datetime import datetime

import jwt
import pytest

from tests.support.live import ROOT, api
from tests.support.pyclient import SECRET, USERS, create_memory, event_log, login, mint

pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def live(cluster_factory):
    cluster = cluster_factory("js-client", users=USERS, settings={"SECRET_KEY": SECRET}, count=1)
    return {"server": cluster.servers[0], "keys": cluster.keys}


def jwt_expiry(token: str) -> int:
    """A JWT's `exp`, read without verifying."""
    return jwt.decode(token, options={"verify_signature": False})["exp"]


def node_binary() -> str:
    """The `node` on PATH, asserted to be 20 or later (a global WebSocket behind a flag, module.register)."""
    node = shutil.which("node")
    assert node, "node is not installed (.ci/run installs nodejs)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert int(version.lstrip("v").split(".")[0]) >= 20, f"the JS client's tests need Node >= 20, not {version}"
    return node


def test_the_js_unit_tests_pass_under_node():
    node = node_binary()
    files = sorted(str(path) for path in (ROOT / "tests" / "js").glob("*.test.mjs"))
    assert len(files) >= 2
    # No --experimental-websocket: the client must load, and be tested, without a global WebSocket.
    result = subprocess.run([node, "--test", *files], cwd=ROOT, capture_output=True, text=True, timeout=120)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    counts = {
        name: int(value)
        for name, value in re.findall(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", report, re.M)
    }
    assert counts["tests"] >= 40 and counts["pass"] == counts["tests"], counts
    assert counts["fail"] == counts["cancelled"] == counts["skipped"] == counts["todo"] == 0, counts


async def test_the_js_client_against_a_live_server(live):
    node = node_binary()
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
    assert set(users) == {"alice", "bob"} and users["bob"] >= 3  # bob's key (twice) and the doomed key
    assert steps["presence"]["pong"]["timestamp"].endswith("Z")
    expires_in = datetime.fromisoformat(steps["refresh"]["expires_at"]).timestamp() - time.time()
    assert steps["refresh"]["expires_at"].endswith("Z") and 25 * 60 < expires_in <= 30 * 60
    assert [(c["code"], c["reconnect"]) for c in steps["done"]["doomed_closes"]] == [(4001, False)]
    assert steps["done"]["doomed_close_code"] == 4001
    assert steps["done"]["doomed_states"] == [["connecting", None], ["open", None], ["closed", 4001]]
    beat = steps["done"]["beat"]  # pinged by itself every 0.4 s of quiet, and answered: still open
    assert beat["state"] == "open" and beat["pongs"] >= 3
    short = steps["done"]["short"]  # renewed in-band before its first token expired, and still connected
    assert [event["type"] for event in short["events"]] == ["authenticated"] and short["state"] == "open"
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
