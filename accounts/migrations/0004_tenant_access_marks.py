"""A tenant renamed (its slug is in every JWT) or deleted is an access change too."""

from django.db import migrations

POSTGRESQL = [
    "CREATE TRIGGER puomemo_accounts_tenant_access AFTER UPDATE OF slug OR DELETE ON accounts_tenant "
    "FOR EACH STATEMENT EXECUTE FUNCTION puomemo_mark_access_change()"
]
SQLITE = [
    f"CREATE TRIGGER puomemo_accounts_tenant_{event.split()[0].lower()}_access AFTER {event} ON accounts_tenant "
    "BEGIN INSERT INTO accounts_accesschangemark (id) VALUES (NULL); END"
    for event in ("UPDATE OF slug", "DELETE")
]


def create_triggers(apps, schema_editor):
    for statement in {"postgresql": POSTGRESQL, "sqlite": SQLITE}[schema_editor.connection.vendor]:
        schema_editor.execute(statement)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP TRIGGER IF EXISTS puomemo_accounts_tenant_access ON accounts_tenant")
    else:
        for event in ("update", "delete"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS puomemo_accounts_tenant_{event}_access")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_access_change_marks")]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
