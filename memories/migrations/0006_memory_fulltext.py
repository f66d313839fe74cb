"""Keyword search: a stored tsvector of the text with a GIN index on PostgreSQL, an FTS5 table kept in sync by
triggers on SQLite.

memories/search.py queries them. On PostgreSQL, search_document is a generated column Django does not know of:
a migration that changes the type of title, content or tags must drop it first and add it again.
SQLite drops a table's triggers when a migration remakes the table (AlterField and the like): such a
migration must run SQLITE_CREATE again (tests/test_search.py fails without the triggers). The FTS table
follows the memory rows by rowid, which a VACUUM may renumber: after one, run SQLITE_REINDEX.
"""

from django.db import migrations

# Stored, so that ranking reads each match's vector rather than parsing its text again.
PG_DOCUMENT = (
    "to_tsvector('english'::regconfig, coalesce(title, '') || ' ' || coalesce(content, '') || ' ' || "
    "coalesce(tags::text, ''))"
)
PG_CREATE = [
    f"ALTER TABLE memories_memory ADD COLUMN search_document tsvector GENERATED ALWAYS AS ({PG_DOCUMENT}) STORED",
    "CREATE INDEX memories_memory_fulltext ON memories_memory USING gin (search_document)",
]
PG_DROP = [
    "DROP INDEX IF EXISTS memories_memory_fulltext",
    "ALTER TABLE memories_memory DROP COLUMN IF EXISTS search_document",
]

# External content: the FTS table indexes the memory rows by rowid, and stores no second copy of the text.
# Tags are indexed as their words, not as the JSON text, whose \uXXXX escapes would hide "café" from a search.
def _tags(row: str) -> str:
    return f"(SELECT group_concat(value, ' ') FROM json_each(coalesce({row}.tags, '[]')))"


def _index(row: str) -> str:
    return (
        f"INSERT INTO memories_memory_fts(rowid, title, content, tags) "
        f"VALUES ({row}.rowid, {row}.title, {row}.content, {_tags(row)});"
    )


def _unindex(row: str) -> str:
    return (
        f"INSERT INTO memories_memory_fts(memories_memory_fts, rowid, title, content, tags) "
        f"VALUES ('delete', {row}.rowid, {row}.title, {row}.content, {_tags(row)});"
    )


# FTS5's own 'rebuild' would read the tags' JSON text: re-index with this instead (after a VACUUM too).
SQLITE_REINDEX = [
    "INSERT INTO memories_memory_fts(memories_memory_fts) VALUES ('delete-all')",
    "INSERT INTO memories_memory_fts(rowid, title, content, tags) "
    f"SELECT m.rowid, m.title, m.content, {_tags('m')} FROM memories_memory m",
]
SQLITE_CREATE = [
    "CREATE VIRTUAL TABLE memories_memory_fts USING fts5("
    "title, content, tags, content='memories_memory', content_rowid='rowid', tokenize='porter unicode61')",
    f"CREATE TRIGGER memories_memory_fts_insert AFTER INSERT ON memories_memory BEGIN {_index('new')} END",
    f"CREATE TRIGGER memories_memory_fts_delete AFTER DELETE ON memories_memory BEGIN {_unindex('old')} END",
    "CREATE TRIGGER memories_memory_fts_update AFTER UPDATE OF title, content, tags ON memories_memory BEGIN "
    f"{_unindex('old')} {_index('new')} END",
    *SQLITE_REINDEX,
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS memories_memory_fts_insert",
    "DROP TRIGGER IF EXISTS memories_memory_fts_delete",
    "DROP TRIGGER IF EXISTS memories_memory_fts_update",
    "DROP TABLE IF EXISTS memories_memory_fts",
]


def _run(statements: dict):
    def run(apps, schema_editor):
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("memories", "0005_memory_trash")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": PG_CREATE, "sqlite": SQLITE_CREATE}),
            _run({"postgresql": PG_DROP, "sqlite": SQLITE_DROP}),
        ),
    ]
