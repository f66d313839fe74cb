"""Who changed a memory is stored with it and named in its events; a bare ORM write keeps the invariants."""

import pytest
from channels.db import database_sync_to_async

from accounts.models import Role
from memories.models import EmbeddingStatus, Memory, Visibility
from memories.services import memory_create, memory_delete, memory_update
from tests.support.auth import jwt_for
from tests.support.factories import principal
from tests.support.wsclient import connect, frames

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_last_editor_is_stored_and_a_bare_save_keeps_it(make_user):
    author, admin = make_user(), make_user(Role.ADMIN)
    memory = memory_create(author=principal(author), title="a", visibility=Visibility.TEAM)
    assert (memory.updated_by_id, memory.updated_by_name) == (author.pk, principal(author).user_name)
    memory_update(editor=principal(admin), memory=memory, data={"title": "b"})
    stored = Memory.objects.get(pk=memory.pk)
    assert (stored.updated_by_id, stored.updated_by_name) == (admin.pk, principal(admin).user_name)
    stored.tags = ["bare"]  # a shell write: the invariants hold, the recorded editor stays
    stored.save()
    stored = Memory.objects.get(pk=memory.pk)
    assert (stored.version, stored.updated_by_id) == (3, admin.pk)
    stored.content = "new text"
    stored.save()
    assert Memory.objects.get(pk=memory.pk).embedding_status == EmbeddingStatus.PENDING


async def test_events_name_who_made_each_change(make_user):
    author = await database_sync_to_async(make_user)()
    admin = await database_sync_to_async(make_user)(Role.ADMIN)
    watcher = await connect(jwt_for(await database_sync_to_async(make_user)()), subscribe=["memories"])

    def changes():
        memory = memory_create(author=principal(author), title="a", visibility=Visibility.TEAM)
        memory_update(editor=principal(admin), memory=memory, data={"title": "b"})
        memory_delete(editor=principal(admin), memory=memory)

    await database_sync_to_async(changes)()
    got = [(f["type"], f["data"]["user_id"]) for f in await frames(watcher)]
    assert got == [
        ("memory.created", str(author.pk)),
        ("memory.updated", str(admin.pk)),
        ("memory.deleted", str(admin.pk)),
    ]
    await watcher.disconnect()
