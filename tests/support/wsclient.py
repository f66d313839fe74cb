"""Helpers for talking to the /ws application with channels' WebsocketCommunicator."""

import json

from channels.testing import WebsocketCommunicator

from realtime.routing import websocket_application

BOTH = ("memories", "tenant.updates")


class Refused(Exception):
    """The server accepted the WebSocket, then closed it with `code`."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


async def connect(token: str, *, subscribe=BOTH, headers=()) -> WebsocketCommunicator:
    """Open a connection and wait until it is set up (a ping answered); with `subscribe`, also subscribe.

    The server accepts before it authenticates, so a refusal arrives as a close: raised as Refused.
    """
    comm = WebsocketCommunicator(websocket_application(), f"/ws?token={token}", headers=list(headers))
    connected, _ = await comm.connect()
    assert connected
    await comm.send_json_to({"type": "ping"})
    first = await comm.receive_output(5)
    if first["type"] == "websocket.close":
        raise Refused(first.get("code", 1000))
    assert json.loads(first["text"])["type"] == "pong"
    if subscribe:
        await comm.send_json_to({"type": "subscribe", "data": {"channels": list(subscribe)}})
        assert (await comm.receive_json_from())["type"] == "subscribed"
    return comm


async def close_code(comm: WebsocketCommunicator, timeout: float = 5) -> int:
    """The close code the server sends next, skipping any frames before it."""
    while True:
        message = await comm.receive_output(timeout)
        if message["type"] == "websocket.close":
            return message.get("code", 1000)


async def frames(comm: WebsocketCommunicator, quiet: float = 0.3) -> list[dict]:
    """Every frame that arrives until the connection has been quiet for `quiet` seconds."""
    received = []
    while not await comm.receive_nothing(timeout=quiet):
        message = await comm.receive_output()
        if message["type"] == "websocket.send":
            received.append(json.loads(message["text"]))
    return received
