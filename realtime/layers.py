"""The Redis channel layer: channels-redis pub/sub, with the group sends of one event-loop turn pipelined."""

import asyncio
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer

from puomemo import patches


class PipelinedPubSubChannelLayer(RedisPubSubChannelLayer):
    """channels-redis pub/sub whose group sends made in one event-loop turn share one round trip to Redis."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        patches.check(__name__)  # it reaches into channels-redis' shards (puomemo/patches.py)
        super().__init__(*args, **kwargs)
        # Per event loop and shard: the PUBLISH commands waiting for the next flush.
        self._batches: dict[tuple[asyncio.AbstractEventLoop, Any], list] = {}
        self._flushing: set[asyncio.Task] = set()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Publish a message to a group (one PUBLISH, O(1) in the group's size); raises if Redis fails it."""
        loop = asyncio.get_running_loop()
        layer = self._get_layer()
        name = layer._get_group_channel_name(group)
        shard = layer._get_shard(name)
        key = (loop, shard)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = []
            # The task's first step runs after the sends already scheduled in this turn
            # (asyncio.gather of a transaction's events) have added theirs.
            flushing = loop.create_task(self._flush(key))
            self._flushing.add(flushing)  # a task nobody references may be collected mid-way
            flushing.add_done_callback(self._flushing.discard)
        done = loop.create_future()
        batch.append((name, self.serialize(message), done))
        await done

    async def _flush(self, key: tuple[asyncio.AbstractEventLoop, Any]) -> None:
        batch = self._batches.pop(key)
        shard = key[1]
        try:
            async with shard._lock:  # the shard's own publishes hold it too
                shard._ensure_redis()
                pipe = shard._redis.pipeline(transaction=False)
                for name, data, _ in batch:
                    pipe.publish(name, data)
                await pipe.execute()
        except Exception as error:
            for _, _, done in batch:
                if not done.done():
                    done.set_exception(error)
        else:
            for _, _, done in batch:
                if not done.done():
                    done.set_result(None)
