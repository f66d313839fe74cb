"""Fan-out: frames go straight to the socket when nothing waits, through the queue when something does, in order."""

import asyncio
import json
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction

from realtime import delivery
from realtime.consumers import MemoryConsumer
from realtime.daphne import CONNECTION
from realtime.routing import websocket_application
from tests.support.auth import jwt_for
from tests.support.factories import MemoryFactory
from tests.support.wsclient import close_code, frames

pytestmark = pytest.mark.django_db(transaction=True)


def sync(fn, *args, **kwargs):
    return database_sync_to_async(fn)(*args, **kwargs)


def write(owner, *titles: str) -> None:
    with transaction.atomic():
        for title in titles:
            MemoryFactory(owner=owner, title=title)


class DirectConnection:
    """What daphne's Connection offers the application (realtime/daphne.py), sending into the communicator's stream."""

    def __init__(self, output: asyncio.Queue, direct: list[str]) -> None:
        self.output, self.direct = output, direct

    def send_text(self, text: str) -> None:
        self.direct.append(text)
        self.output.put_nowait({"type": "websocket.send", "text": text})

    def unsent_bytes(self) -> int:
        return 0

    def drop(self) -> None:
        raise AssertionError("a client of these tests reads all it is sent")


async def connect_with_direct_send(token: str) -> tuple[WebsocketCommunicator, list[str]]:
    """A connection whose scope offers a direct send, as daphne's does (realtime/daphne.py), into the same stream."""
    application = websocket_application()
    direct: list[str] = []

    async def with_direct_send(scope, receive, send):
        # The communicator's output queue: direct and queued frames share one stream.
        connection = DirectConnection(send.__self__, direct)
        await application({**scope, CONNECTION: connection}, receive, send)

    comm = WebsocketCommunicator(with_direct_send, f"/ws?token={token}")
    assert (await comm.connect())[0]
    await comm.send_json_to({"type": "subscribe", "data": {"channels": ["memories"]}})
    assert (await comm.receive_json_from())["type"] == "subscribed"
    return comm, direct


def seqs(texts: list[str]) -> list[int]:
    """The sequence numbers of the memory events among frames (replies have none)."""
    return [seq for seq in (json.loads(text).get("seq") for text in texts) if seq is not None]


async def test_every_frame_goes_straight_to_the_socket_in_order_and_a_resume_repeats_nothing(make_user, monkeypatch):
    owner = await sync(make_user)
    await sync(write, owner, "old 1", "old 2", "old 3")
    comm, direct = await connect_with_direct_send(jwt_for(owner))

    await sync(write, owner, "live 4", "live 5")
    assert [f["seq"] for f in await frames(comm)] == [4, 5] and seqs(direct) == [4, 5]

    # A resume after live events: the replay stops where live delivery began, and what comes meanwhile waits for it.
    real_replay = delivery.replay

    def slow_replay(*args, **kwargs):
        time.sleep(0.3)
        return real_replay(*args, **kwargs)

    monkeypatch.setattr(delivery, "replay", slow_replay)
    await comm.send_json_to({"type": "resume", "data": {"last_seq": 0}})
    await asyncio.sleep(0.1)
    await sync(write, owner, "live 6", "live 7")
    await comm.send_json_to({"type": "ping"})  # answered at once, while the replay is read
    received = await frames(comm, quiet=1.0)
    assert [(f["type"], f.get("seq")) for f in received] == [
        ("pong", None),
        *(("memory.created", seq) for seq in (1, 2, 3)),
        ("resumed", None),
        ("memory.created", 6),
        ("memory.created", 7),
    ]
    assert received[4]["data"] == {"last_seq": 7, "epoch": received[1]["epoch"]}
    assert seqs(direct) == [4, 5, 1, 2, 3, 6, 7]  # no queue under daphne

    # Another resume from as far back: neither what the first replayed nor what came live is sent again.
    await comm.send_json_to({"type": "resume", "data": {"last_seq": 0}})
    assert [(f["type"], f["data"]) for f in await frames(comm, quiet=1.0)] == [("resumed", received[4]["data"])]
    await comm.disconnect()


async def test_a_connection_without_direct_send_that_falls_behind_gets_1013(make_user, settings, monkeypatch):
    settings.PUOMEMO_WS_OUTBOUND_QUEUE = 3
    owner = await sync(make_user)
    comm = WebsocketCommunicator(websocket_application(), f"/ws?token={jwt_for(owner)}")
    assert (await comm.connect())[0]
    await comm.send_json_to({"type": "subscribe", "data": {"channels": ["memories"]}})
    assert (await comm.receive_json_from())["type"] == "subscribed"
    stuck = asyncio.Event()

    async def never_completes(self, text_data=None, bytes_data=None, close=False):
        await stuck.wait()

    monkeypatch.setattr(MemoryConsumer, "send", never_completes)
    await sync(write, owner, *(f"burst {i}" for i in range(6)))  # one in the writer's hands, three queued, then full
    assert await close_code(comm) == 1013
