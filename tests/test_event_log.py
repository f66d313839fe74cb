"""The event log: gapless per-tenant seq, resume, resync, re-filtered replay, healing lost publishes, GET /events."""

import asyncio
import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Membership, Role
from memories.models import Memory, Visibility
from realtime import delivery
from realtime.log import position, prune_events
from realtime.models import Event, TenantSequence
from tests.support.auth import jwt_for
from tests.support.factories import MemoryFactory
from tests.support.wsclient import connect, frames

pytestmark = pytest.mark.django_db(transaction=True)


def sync(fn, *args, **kwargs):
    return database_sync_to_async(fn)(*args, **kwargs)


def seqs(tenant) -> list[int]:
    return list(Event.objects.filter(tenant=tenant).values_list("seq", flat=True))


async def resume(comm, last_seq, **more) -> list[dict]:
    """Send resume and return every frame up to and including `resumed` (or `resync_required`)."""
    await comm.send_json_to({"type": "resume", "data": {"last_seq": last_seq, **more}})
    received = []
    while not received or received[-1]["type"] not in ("resumed", "resync_required"):
        received.append(await comm.receive_json_from(5))
    return received


def test_each_tenant_numbers_its_events_without_gaps_and_a_rollback_takes_none(make_user, other_tenant, tenant):
    owner, outsider = make_user(), make_user(in_tenant=other_tenant)
    memory = MemoryFactory(owner=owner)
    memory.title = "changed"
    memory.save()
    with pytest.raises(RuntimeError), transaction.atomic():
        MemoryFactory(owner=owner)
        raise RuntimeError("rolled back")
    MemoryFactory(owner=outsider)
    memory.delete()
    assert seqs(tenant) == [1, 2, 3]
    assert list(Event.objects.filter(tenant=tenant).values_list("type", flat=True)) == [
        "memory.created",
        "memory.updated",
        "memory.deleted",
    ]
    assert seqs(other_tenant) == [1]


async def test_resume_replays_what_the_viewer_may_see_in_order_then_live_events(make_user):
    owner, viewer = await sync(lambda: (make_user(), make_user(Role.GUEST)))
    comm = await connect(jwt_for(viewer), subscribe=["memories"])
    await sync(MemoryFactory, owner=owner, visibility=Visibility.PUBLIC, title="seen live")
    [live] = await frames(comm)
    await comm.disconnect()

    def while_away():
        MemoryFactory(owner=owner, visibility=Visibility.TEAM, title="not for guests")
        MemoryFactory(owner=owner, visibility=Visibility.PUBLIC, title="missed 1")
        MemoryFactory(owner=owner, visibility=Visibility.PUBLIC, title="missed 2")

    await sync(while_away)
    comm = await connect(jwt_for(viewer), subscribe=["memories"])
    received = await resume(comm, live["seq"])
    assert [(f["type"], f.get("seq"), f["data"].get("memory", {}).get("title")) for f in received] == [
        ("memory.created", 3, "missed 1"),
        ("memory.created", 4, "missed 2"),
        ("resumed", None, None),
    ]
    assert received[-1]["data"] == {"last_seq": 4, "epoch": live["epoch"]}
    assert {f["epoch"] for f in received[:-1]} == {live["epoch"]}
    await sync(MemoryFactory, owner=owner, visibility=Visibility.PUBLIC)
    assert [f["seq"] for f in await frames(comm)] == [5]
    await comm.disconnect()


async def test_a_resume_of_a_short_gap_takes_four_queries(make_user, monkeypatch):
    """Where the stream stands and its oldest event, then one page: its events and their memories."""
    queries = []

    def counted(read):
        def run(*args, **kwargs):
            with CaptureQueriesContext(connection) as captured:  # on the thread the read runs on
                result = read(*args, **kwargs)
            queries.extend(query["sql"] for query in captured)
            return result

        return run

    owner = await sync(make_user)
    for title in ("one", "two"):
        await sync(MemoryFactory, owner=owner, title=title)
    monkeypatch.setattr(delivery, "resync_reason", counted(delivery.resync_reason))
    monkeypatch.setattr(delivery, "replay", counted(delivery.replay))
    comm = await connect(jwt_for(owner), subscribe=["memories"])
    received = await resume(comm, 0)
    assert [f["data"].get("memory", {}).get("title") for f in received] == ["one", "two", None]
    assert len(queries) == 4, queries
    await comm.disconnect()


async def test_last_seq_in_subscribe_resumes_too(make_user):
    owner = await sync(make_user)
    await sync(MemoryFactory, owner=owner)
    comm = await connect(jwt_for(owner), subscribe=None)
    await comm.send_json_to({"type": "subscribe", "data": {"channels": ["memories"], "last_seq": 0}})
    received = [await comm.receive_json_from() for _ in range(3)]
    assert [(f["type"], f.get("seq")) for f in received] == [
        ("subscribed", None),
        ("memory.created", 1),
        ("resumed", None),
    ]
    await comm.disconnect()


@pytest.mark.parametrize("last_seq", ["abc", -5, 1e308, True])
async def test_a_subscribe_with_a_bad_last_seq_is_refused_whole(make_user, last_seq):
    owner = await sync(make_user)
    comm = await connect(jwt_for(owner), subscribe=None)
    await comm.send_json_to({"type": "subscribe", "data": {"channels": ["memories"], "last_seq": last_seq}})
    reply = await comm.receive_json_from()
    assert (reply["type"], reply["data"]) == (
        "error",
        {"message": "Invalid message format: last_seq must be a whole number"},
    )
    await comm.send_json_to({"type": "unsubscribe", "data": {"channels": []}})
    assert (await comm.receive_json_from())["data"] == {"channels": []}  # the channels were not subscribed either
    await comm.disconnect()


async def test_replay_judges_by_the_viewer_and_memory_as_they_are_now(make_user):
    owner, viewer = await sync(lambda: (make_user(), make_user()))
    hidden_later = await sync(MemoryFactory, owner=owner, visibility=Visibility.TEAM, title="made private later")
    await sync(MemoryFactory, owner=owner, visibility=Visibility.TEAM, title="team")
    await sync(MemoryFactory, owner=owner, visibility=Visibility.PUBLIC, title="public")

    def later():
        hidden_later.visibility = Visibility.PRIVATE
        hidden_later.save()
        Membership.objects.filter(user=viewer).update(role=Role.GUEST)  # demoted since

    await sync(later)
    comm = await connect(jwt_for(viewer), subscribe=["memories"])
    received = await resume(comm, 0)
    titles = [f["data"]["memory"]["title"] for f in received if f["type"] == "memory.created"]
    assert titles == ["public"]
    assert [f["type"] for f in received] == ["memory.created", "resumed"]
    await comm.disconnect()


@pytest.mark.parametrize("where", ["ahead", "expired", "too_many"])
async def test_resume_outside_the_log_or_its_bound_asks_for_a_resync(make_user, settings, where):
    owner = await sync(make_user)
    for _ in range(4):
        await sync(MemoryFactory, owner=owner)
    if where == "expired":
        settings.PUOMEMO_EVENT_LOG_MIN_EVENTS = 2
        await sync(lambda: Event.objects.update(created_at=timezone.now() - timedelta(days=2)))
        assert await sync(prune_events) == 2
    settings.PUOMEMO_WS_RESUME_MAX_EVENTS = 2  # 2 events may be replayed, not 3
    comm = await connect(jwt_for(owner), subscribe=["memories"])
    [reply] = await resume(comm, {"ahead": 99, "expired": 1, "too_many": 1}[where])
    epoch = (await sync(position, owner.membership.tenant_id)).epoch
    assert (reply["type"], reply["data"]) == ("resync_required", {"reason": where, "current_seq": 4, "epoch": epoch})
    assert [f["type"] for f in await resume(comm, 2)] == ["memory.created", "memory.created", "resumed"]
    await comm.disconnect()


async def test_a_resume_of_another_epoch_asks_for_a_resync_and_one_without_an_epoch_is_judged_by_seq(make_user):
    owner = await sync(make_user)
    for _ in range(3):
        await sync(MemoryFactory, owner=owner)
    epoch = (await sync(position, owner.membership.tenant_id)).epoch
    comm = await connect(jwt_for(owner), subscribe=["memories"])
    [reply] = await resume(comm, 1, epoch="an older epoch")
    assert (reply["type"], reply["data"]) == ("resync_required", {"reason": "epoch", "current_seq": 3, "epoch": epoch})
    replayed = await resume(comm, 1, epoch=epoch)
    assert [(f["type"], f.get("epoch")) for f in replayed] == [
        ("memory.created", epoch),
        ("memory.created", epoch),
        ("resumed", None),
    ]
    assert replayed[-1]["data"] == {"last_seq": 3, "epoch": epoch}
    await comm.disconnect()
    comm = await connect(jwt_for(owner), subscribe=["memories"])
    assert [f["type"] for f in await resume(comm, 2)] == ["memory.created", "resumed"]  # an older client's resume
    await comm.send_json_to({"type": "resume", "data": {"last_seq": 2, "epoch": 7}})
    message = (await comm.receive_json_from(5))["data"]["message"]
    assert message == "Invalid message format: epoch must be a string of 1 to 100 characters"
    await comm.disconnect()


def test_a_new_counter_row_starts_a_new_epoch(make_user, client_for):
    owner = make_user()
    MemoryFactory(owner=owner)
    api = client_for(owner)
    before = api.get("/api/v4/memories/").json()
    assert before["seq"] == 1 and before["epoch"] == position(owner.membership.tenant_id).epoch
    # A stream numbered anew (the log and its counter gone, as an older backup without them would leave it).
    Event.objects.filter(tenant_id=owner.membership.tenant_id).delete()
    TenantSequence.objects.filter(tenant_id=owner.membership.tenant_id).delete()
    MemoryFactory(owner=owner)
    after = api.get("/api/v4/events", {"after_seq": 0, "epoch": before["epoch"]})
    assert after.status_code == 410
    assert after.json()["reason"] == "epoch" and after.json()["epoch"] not in (None, before["epoch"])
    assert api.get("/api/v4/events", {"after_seq": 0, "epoch": after.json()["epoch"]}).status_code == 200


def test_an_event_is_stamped_when_it_is_numbered_not_before_it_waited_for_the_number(make_user):
    """seq order is time order, so that pruning by age never keeps an event and deletes a later one."""
    owner = make_user()
    numbered, done = threading.Event(), {}

    def second_writer() -> None:
        numbered.wait(10)
        try:  # waits for the counter (PostgreSQL: its row's lock; SQLite: the database's) until the first commits
            done["memory"] = MemoryFactory(owner=owner, title="second")
        finally:
            connection.close()

    thread = threading.Thread(target=second_writer)
    thread.start()
    with transaction.atomic():
        MemoryFactory(owner=owner, title="first")
        numbered.set()
        threading.Event().wait(0.5)  # the second writer is waiting meanwhile
        first_committed_around = timezone.now()
    thread.join(10)
    first, second = Event.objects.filter(tenant=owner.membership.tenant).order_by("seq")
    assert second.seq == first.seq + 1 and "memory" in done
    assert second.created_at >= first_committed_around - timedelta(milliseconds=50), (first, second)


def test_retention_keeps_the_last_events_and_the_young_ones(make_user, settings):
    settings.PUOMEMO_EVENT_LOG_MIN_EVENTS = 3
    owner = make_user()
    for _ in range(6):
        MemoryFactory(owner=owner)
    Event.objects.filter(seq__lte=2).update(created_at=timezone.now() - timedelta(hours=25))
    assert prune_events() == 2
    assert seqs(owner.membership.tenant) == [3, 4, 5, 6]  # 3 is young enough, though beyond the last three


async def test_a_lost_publish_is_healed_from_the_log_in_order(make_user, settings, monkeypatch):
    settings.PUOMEMO_EVENT_LOG_POLL_SECONDS = 0.2
    owner = await sync(make_user)
    comm = await connect(jwt_for(owner), subscribe=["memories"])
    layer = get_channel_layer()
    real_send = layer.group_send
    lost = []

    async def lose_the_second(group, message):
        if message.get("seq") == 2 and not lost:
            lost.append(message)
            raise ConnectionError("Redis blinked")
        await real_send(group, message)

    monkeypatch.setattr(layer, "group_send", lose_the_second)
    for title in ("one", "two", "three"):
        await sync(MemoryFactory, owner=owner, title=title)
    await sync(MemoryFactory, owner=owner, title="four")
    received = await frames(comm, quiet=0.8)
    assert lost and [(f["seq"], f["data"]["memory"]["title"]) for f in received] == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
        (4, "four"),
    ]
    await comm.disconnect()


async def test_a_write_the_process_never_published_arrives_by_the_log_poll(make_user, settings):
    settings.PUOMEMO_EVENT_LOG_POLL_SECONDS = 0.2
    owner = await sync(make_user)
    comm = await connect(jwt_for(owner), subscribe=["memories"])

    def written_elsewhere():
        # As another process on another channel layer would: logged, never published here.
        with transaction.atomic():
            MemoryFactory(owner=owner, title="from a shell")
            transaction.get_connection().run_on_commit.clear()

    await sync(written_elsewhere)
    await asyncio.sleep(0.5)
    assert [f["data"]["memory"]["title"] for f in await frames(comm)] == ["from a shell"]
    await comm.disconnect()


async def test_a_counter_put_back_renews_the_epoch_and_connections_are_told_to_resync(make_user, settings):
    settings.PUOMEMO_EVENT_LOG_POLL_SECONDS = 0.2
    owner = await sync(make_user)
    for _ in range(3):
        await sync(MemoryFactory, owner=owner)
    comm = await connect(jwt_for(owner), subscribe=["memories"])
    await sync(MemoryFactory, owner=owner)
    [live] = await frames(comm)
    tenant_id = owner.membership.tenant_id

    def put_back():
        # What restoring an older copy of the tables in place does (SQLite's file, or rows replaced by hand).
        Event.objects.filter(tenant_id=tenant_id, seq__gt=2).delete()
        TenantSequence.objects.filter(tenant_id=tenant_id).update(last_seq=2)

    await sync(put_back)
    await asyncio.sleep(0.5)
    [told] = await frames(comm)
    renewed = (await sync(position, tenant_id)).epoch
    assert renewed != live["epoch"]
    assert (told["type"], told["data"]) == ("resync_required", {"reason": "epoch", "current_seq": 2, "epoch": renewed})
    await sync(MemoryFactory, owner=owner)  # seq 3 again, another event: delivered, in the new epoch
    assert [(f["seq"], f["epoch"]) for f in await frames(comm)] == [(3, renewed)]
    await comm.disconnect()


def test_events_endpoint_pages_and_filters(make_user, client_for):
    owner, guest = make_user(), make_user(Role.GUEST)
    for i in range(5):
        MemoryFactory(owner=owner, visibility=Visibility.PUBLIC if i % 2 == 0 else Visibility.TEAM, title=f"m{i}")
    api = client_for(guest)
    first = api.get("/api/v4/events", {"after_seq": 0, "limit": 3}).json()
    assert [(e["seq"], e["data"]["memory"]["title"]) for e in first["events"]] == [(1, "m0"), (3, "m2")]
    assert (first["last_seq"], first["current_seq"]) == (3, 5)
    second = api.get("/api/v4/events", {"after_seq": first["last_seq"], "limit": 3}).json()
    assert [e["seq"] for e in second["events"]] == [5]
    assert second["last_seq"] == 5
    assert set(second["events"][0]) == {"id", "type", "timestamp", "data", "seq", "epoch"}
    assert second["events"][0]["epoch"] == second["epoch"] == first["epoch"]


def test_events_endpoint_says_when_to_resync_and_rejects_bad_input(make_user, client_for):
    owner = make_user()
    MemoryFactory(owner=owner)
    api = client_for(owner)
    ahead = api.get("/api/v4/events", {"after_seq": 7})
    assert ahead.status_code == 410
    assert {k: ahead.json()[k] for k in ("reason", "current_seq")} == {"reason": "ahead", "current_seq": 1}
    bad = api.get("/api/v4/events", {"after_seq": "x", "limit": 5000})
    assert bad.status_code == 400 and set(bad.json()) == {"after_seq", "limit"}
    assert Memory.objects.count() == 1


def test_prune_command_reports_what_it_deleted(make_user, settings):
    from io import StringIO

    from django.core.management import call_command

    settings.PUOMEMO_EVENT_LOG_MIN_EVENTS = 1
    owner = make_user()
    for _ in range(3):
        MemoryFactory(owner=owner)
    Event.objects.update(created_at=timezone.now() - timedelta(hours=25))
    out = StringIO()
    call_command("prune_events", stdout=out)
    assert "Deleted 2 events" in out.getvalue()
    assert seqs(owner.membership.tenant) == [3]


async def test_list_then_resume_from_its_seq_misses_and_doubles_nothing(make_user, client_for):
    owner = await sync(make_user)
    for title in ("before 1", "before 2"):
        await sync(MemoryFactory, owner=owner, title=title)
    listing = (await sync(lambda: client_for(owner).get("/api/v4/memories/"))).json()
    assert listing["seq"] == 2 and {m["title"] for m in listing["results"]} == {"before 1", "before 2"}
    for title in ("after 1", "after 2"):
        await sync(MemoryFactory, owner=owner, title=title)
    comm = await connect(jwt_for(owner), subscribe=["memories"])
    received = await resume(comm, listing["seq"])
    assert [(f.get("seq"), f["data"].get("memory", {}).get("title")) for f in received] == [
        (3, "after 1"),
        (4, "after 2"),
        (None, None),
    ]
    await comm.disconnect()


def test_the_list_reads_its_rows_and_seq_in_one_snapshot(make_user, client_for, monkeypatch):
    """A write that commits between reading the rows and reading seq must not show in one and not the other."""
    from memories import api as memories_api

    owner = make_user()
    MemoryFactory(owner=owner)
    real = memories_api.MemoryOutputSerializer
    other = make_user()

    def serialize_then_write(*args, **kwargs):
        data = real(*args, **kwargs).data
        # Another connection writes now (on SQLite it waits for the list's transaction to end).
        thread = threading.Thread(target=lambda: (MemoryFactory(owner=other), connection.close()))
        thread.start()
        thread.join(0.5)
        serialize_then_write.thread = thread
        return type("Done", (), {"data": data})()

    monkeypatch.setattr(memories_api, "MemoryOutputSerializer", serialize_then_write)
    listing = client_for(owner).get("/api/v4/memories/").json()
    serialize_then_write.thread.join()
    assert (len(listing["results"]), listing["seq"]) == (1, 1)
    assert Event.objects.filter(tenant=owner.membership.tenant).count() == 2


async def test_replay_never_shows_what_was_written_while_the_viewer_could_not_see_it(make_user, client_for):
    owner, guest = await sync(lambda: (make_user(), make_user(Role.GUEST)))

    def draft_then_publish():
        memory = MemoryFactory(owner=owner, visibility=Visibility.PRIVATE, content="PRIVATE SECRET")
        memory.content = "scrubbed"
        memory.save()
        memory.visibility = Visibility.PUBLIC
        memory.save()

    await sync(draft_then_publish)
    comm = await connect(jwt_for(guest), subscribe=["memories"])
    received = await resume(comm, 0)
    assert [(f["type"], f.get("seq")) for f in received] == [("memory.created", 3), ("resumed", None)]
    assert received[0]["data"]["memory"]["content"] == "scrubbed"
    polled = (await sync(lambda: client_for(guest).get("/api/v4/events", {"after_seq": 0}))).json()
    assert "PRIVATE SECRET" not in str(polled) and [e["seq"] for e in polled["events"]] == [3]
    await comm.disconnect()
