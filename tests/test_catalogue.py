"""The event catalogue: publish refuses what it does not declare, and frames are checked exactly."""

import json

import pytest

from accounts.principal import Principal
from realtime.catalogue import LOGGED, MemoryCreated, MemoryRestored, ShapeError, _hints, check, check_frame
from realtime.messages import event_message
from realtime.rendering import EventFrames


def test_publish_refuses_an_undeclared_event_or_a_drifted_payload():
    with pytest.raises(ShapeError, match="not in the event catalogue"):
        event_message(tenant_id=1, event_type="memory.exploded", channel="memories", data={}, audience=None)
    with pytest.raises(ShapeError, match="unknown \\['secret'\\]"):
        data = {"memory_id": "m", "embedding_model": "x", "secret": 1}
        event_message(tenant_id=1, event_type="memory.embedding_complete", channel="memories", data=data, audience=None)


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        ({"id": "1", "type": "pong", "timestamp": "t", "data": {"timestamp": "t"}, "seq": 1}, "expected"),
        ({"id": "1", "type": "memory.embedding_complete", "timestamp": "t", "data": {}}, "expected"),
        ({"id": "1", "type": "memory.deleted", "timestamp": "t", "seq": 0, "epoch": "e", "data": {}}, "positive"),
        ({"id": "1", "type": "memory.deleted", "timestamp": "t", "seq": 1, "epoch": "", "data": {}}, "non-empty"),
        ({"id": "1", "type": "memory.deleted", "timestamp": "t", "seq": 1, "data": {}}, "expected"),
        ({"id": "1", "type": "presence", "timestamp": "t", "data": {"users": [{"user_id": 1}]}}, "missing"),
        ({"id": "1", "type": "resumed", "timestamp": "t", "data": {"last_seq": True, "epoch": None}}, "expected"),
    ],
)
def test_frames_that_do_not_match_are_refused(frame, problem):
    with pytest.raises(ShapeError, match=problem):
        check_frame(frame)


def test_optional_fields_and_unions():
    check("memory.deleted", {"memory_id": "m", "title": "t", "user_id": "1", "user_name": "a"})
    check("memory.deleted", {"memory_id": "m", "title": "t", "user_id": "1", "user_name": "a", "reason": "visibility"})
    check("authenticated", {"expires_at": None})
    check("error", {"message": "slow down", "retry_after": 1.5})


def test_memory_restored_has_exactly_the_shape_of_memory_created():
    assert _hints(MemoryRestored) == _hints(MemoryCreated) and LOGGED["memory.restored"] is MemoryRestored
    memory = {
        "id": "m",
        "title": "t",
        "content": "",
        "tags": [],
        "visibility": "team",
        "version": 2,
        "created_at": "t",
        "updated_at": "t",
    }
    check("memory.restored", {"memory": memory, "user_id": "1", "user_name": "a"})
    with pytest.raises(ShapeError, match="missing \\['memory'\\]"):
        check("memory.restored", {"memory_id": "m", "title": "t", "user_id": "1", "user_name": "a"})


@pytest.mark.parametrize(
    ("role", "visibility", "frame"),
    [("member", "team", "memory.restored"), ("guest", "team", None), ("guest", "public", "memory.restored")],
)
def test_a_restore_is_rendered_to_whoever_may_see_the_memory_now(role, visibility, frame):
    audience = {"tenant_id": 1, "owner_id": 9, "visibility": visibility}
    event = event_message(
        tenant_id=1,
        event_type="memory.restored",
        channel="memories",
        data={
            "memory": {
                "id": "m",
                "title": "t",
                "content": "",
                "tags": [],
                "visibility": visibility,
                "version": 1,
                "created_at": "t",
                "updated_at": "t",
            },
            "user_id": "9",
            "user_name": "ann",
        },
        audience={"before": None, "after": audience, "before_title": "t"},
        seq=5,
    )
    viewer = Principal(user_id=2, tenant_id=1, role=role, user_name="v", tenant_slug="x")
    text = EventFrames(event).frame_for(viewer)
    assert (json.loads(text)["type"] if text else None) == frame
