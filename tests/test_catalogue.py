"""The event catalogue: publish refuses what it does not declare, and frames are checked exactly."""

import pytest

from realtime.catalogue import ShapeError, check, check_frame
from realtime.messages import event_message


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
        ({"id": "1", "type": "memory.deleted", "timestamp": "t", "seq": 0, "data": {}}, "positive"),
        ({"id": "1", "type": "presence", "timestamp": "t", "data": {"users": [{"user_id": 1}]}}, "missing"),
        ({"id": "1", "type": "resumed", "timestamp": "t", "data": {"last_seq": True}}, "expected"),
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
