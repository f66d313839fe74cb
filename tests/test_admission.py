"""The admission bound: a process sets up a bounded number of new connections at once; others wait, or get 1013."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from realtime.admission import Admission
from realtime.node import node
from tests.support.auth import jwt_for
from tests.support.wsclient import Refused, connect

pytestmark = pytest.mark.django_db(transaction=True)


async def test_turns_are_taken_in_order_and_a_full_queue_or_a_long_wait_is_refused():
    admission = Admission(concurrency=1, queue=1, wait=0.3)
    assert await admission.enter()  # the one slot
    waiter = asyncio.create_task(admission.enter())
    await asyncio.sleep(0)
    assert await admission.enter() is False  # the queue of one is full: refused at once
    assert await waiter is False  # waited 0.3 s for the slot
    admission.leave()
    assert await admission.enter()
    waiter = asyncio.create_task(admission.enter())
    await asyncio.sleep(0.05)
    admission.leave()  # the slot passes to the one waiting
    assert await waiter
    admission.leave()
    assert admission.waiting == 0


async def test_a_connection_waits_for_a_turn_then_joins_or_is_told_to_try_again_later(make_user, settings):
    settings.PUOMEMO_WS_ADMISSION_CONCURRENCY = 1
    settings.PUOMEMO_WS_ADMISSION_QUEUE = 1
    settings.PUOMEMO_WS_ADMISSION_WAIT_SECONDS = 1
    token = jwt_for(await database_sync_to_async(make_user)())
    admission = node().admission()
    assert await admission.enter()  # every slot taken, as in a storm
    with pytest.raises(Refused) as refused:
        await connect(token, subscribe=None)  # waited its second in the queue
    assert refused.value.code == 1013
    waiting = asyncio.create_task(connect(token))
    await asyncio.sleep(0.3)
    admission.leave()  # its turn comes within the wait
    comm = await waiting
    await comm.disconnect()
    assert admission.waiting == 0 and not admission.slots.locked()
