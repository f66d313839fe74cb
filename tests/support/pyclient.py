"""The Python client (`puomemo_client`) and its CLI driven by tests: clients run, events recorded, JWTs minted."""

import asyncio
import contextlib
import json
import os
import sys
import time
import urllib.request
import uuid
from asyncio.subprocess import PIPE

import jwt
from puomemo_client import PuoMemoClient, PuoMemoClosedError

from tests.support.live import api

SECRET = "test-secret-for-the-client-tests-only"  # the servers sign with it, so the test can mint short-lived JWTs

USERS = {"alice": ("live", "admin"), "bob": ("live", "member")}


def login(server, username: str) -> str:
    """A JWT access token from the server's login endpoint."""
    body = json.dumps({"username": username, "password": "pw-live-123"}).encode()
    request = urllib.request.Request(
        f"{server.http}/api/v4/auth/token/", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["access"]


def mint(like: str, lifetime: float) -> str:
    """A JWT with the claims of `like` (user, tenant) that expires in `lifetime` seconds."""
    claims = jwt.decode(like, options={"verify_signature": False})
    now = time.time()
    payload = {**claims, "iat": int(now), "exp": int(now + lifetime), "jti": uuid.uuid4().hex}
    return jwt.encode(payload, SECRET, algorithm="HS256")


def record(client: PuoMemoClient, *events: str) -> asyncio.Queue:
    """A queue of (event, data) for each of `events` the client's handlers receive."""
    queue: asyncio.Queue = asyncio.Queue()
    for event in events:
        client.on(event, lambda data, event=event: queue.put_nowait((event, data)))
    return queue


async def next_event(queue: asyncio.Queue, event: str, timeout: float = 10) -> dict:
    while True:
        name, data = await asyncio.wait_for(queue.get(), timeout)
        if name == event:
            return data


@contextlib.asynccontextmanager
async def running(*clients: PuoMemoClient):
    """Run the clients' connect() loops; wait until all are subscribed; disconnect them afterwards."""
    tasks = [asyncio.create_task(client.connect()) for client in clients]
    try:
        for client in clients:
            await client.wait_connected(10)
        yield tasks
    finally:
        for client, task in zip(clients, tasks, strict=True):
            await client.disconnect()
            with contextlib.suppress(PuoMemoClosedError):
                await asyncio.wait_for(task, 5)


async def create_memory(server, key: str, title: str, visibility: str = "team") -> dict:
    status, memory = await asyncio.to_thread(
        api, server, "POST", "/api/v4/memories/", key, {"title": title, "visibility": visibility}
    )
    assert status == 201, memory
    return memory


async def event_log(server, key: str, after_seq: int) -> dict:
    """GET /api/v4/events as the key's user sees them now: {events, last_seq, current_seq}."""
    status, page = await asyncio.to_thread(api, server, "GET", f"/api/v4/events?after_seq={after_seq}&limit=1000", key)
    assert status == 200, page
    return page


async def cli(*args: str, token: str | None, cwd) -> asyncio.subprocess.Process:
    """`python -m puomemo_client tail ARGS`, the token in PUOMEMO_TOKEN, run outside the repository."""
    env = {key: value for key, value in os.environ.items() if key != "PUOMEMO_TOKEN"}
    if token is not None:
        env["PUOMEMO_TOKEN"] = token
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "puomemo_client", "tail", *args, cwd=cwd, env=env, stdout=PIPE, stderr=PIPE
    )


async def read_line(stream: asyncio.StreamReader, timeout: float = 15) -> str:
    text = (await asyncio.wait_for(stream.readline(), timeout)).decode()
    assert text, "the stream ended"
    return text


async def until(stream: asyncio.StreamReader, text: str) -> str:
    while text not in (line := await read_line(stream)):
        pass
    return line


async def stop_cli(process: asyncio.subprocess.Process, signum: int) -> tuple[bytes, bytes]:
    process.send_signal(signum)
    return await asyncio.wait_for(process.communicate(), 10)
