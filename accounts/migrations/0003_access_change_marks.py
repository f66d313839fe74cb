"""Triggers that mark every change to memberships, users' access and API keys, whatever made it."""

from django.db import migrations, models

# The columns whose change can end or alter a connection's access. A user's last_login and an
# API key's last_used_at change on every login or use and must not mark anything.
WATCHED = [
    ("accounts_membership", "INSERT OR UPDATE OR DELETE"),
    ("accounts_apikey", "UPDATE OF revoked_at, user_id OR DELETE"),
    ("auth_user", "UPDATE OF is_active, password OR DELETE"),
]

POSTGRESQL = [
    """CREATE FUNCTION puomemo_mark_access_change() RETURNS trigger AS $$
    BEGIN INSERT INTO accounts_accesschangemark DEFAULT VALUES; RETURN NULL; END
    $$ LANGUAGE plpgsql""",
    *(
        f"CREATE TRIGGER puomemo_{table}_access AFTER {events} ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION puomemo_mark_access_change()"
        for table, events in WATCHED
    ),
]

# SQLite: one trigger per event, each row-level (SQLite has no statement-level triggers).
SQLITE = [
    f"CREATE TRIGGER puomemo_{table}_{event.split()[0].lower()}_access AFTER {event} ON {table} "
    "BEGIN INSERT INTO accounts_accesschangemark (id) VALUES (NULL); END"
    for table, events in WATCHED
    for event in events.split(" OR ")
]


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    statements = {"postgresql": POSTGRESQL, "sqlite": SQLITE}.get(vendor)
    if statements is None:
        raise RuntimeError(f"No access-change triggers for the {vendor} database.")
    for statement in statements:
        schema_editor.execute(statement)


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table, events in WATCHED:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS puomemo_{table}_access ON {table}")
        else:
            for event in events.split(" OR "):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS puomemo_{table}_{event.split()[0].lower()}_access")
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS puomemo_mark_access_change()")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_login_failure"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.CreateModel(
            name="AccessChangeMark",
            fields=[("id", models.BigAutoField(primary_key=True, serialize=False))],
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
