"""The fan-out ceiling, for the fan-out benchmark: `websockets.broadcast()` of each Redis pub/sub message.

Run: python bench/ceiling.py --port 8002 --redis redis://127.0.0.1:6379/0
"""

import argparse
import asyncio

import redis.asyncio as redis
from websockets.asyncio.server import broadcast, serve

CHANNEL = "bench.ceiling"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    connections = set()

    async def handler(websocket) -> None:
        connections.add(websocket)
        try:
            await websocket.wait_closed()
        finally:
            connections.discard(websocket)

    pubsub = redis.Redis.from_url(args.redis).pubsub()
    await pubsub.subscribe(CHANNEL)
    async with serve(handler, "127.0.0.1", args.port, compression=None, max_queue=None):
        print("ready", flush=True)
        async for message in pubsub.listen():
            if message["type"] == "message":
                broadcast(connections, message["data"].decode())


if __name__ == "__main__":
    asyncio.run(main())
