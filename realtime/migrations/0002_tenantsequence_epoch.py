"""Give every tenant's counter an epoch: each existing row a random one of its own."""

from django.db import migrations, models

import realtime.models


def give_epochs(apps, schema_editor):
    TenantSequence = apps.get_model("realtime", "TenantSequence")
    for row in TenantSequence.objects.only("pk"):
        TenantSequence.objects.filter(pk=row.pk).update(epoch=realtime.models.new_epoch())


class Migration(migrations.Migration):
    dependencies = [
        ("realtime", "0001_initial"),
    ]

    operations = [
        # A callable default is evaluated once for the whole table: fill the rows one by one after.
        migrations.AddField(
            model_name="tenantsequence",
            name="epoch",
            field=models.CharField(default="", max_length=32),
            preserve_default=False,
        ),
        migrations.RunPython(give_epochs, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="tenantsequence",
            name="epoch",
            field=models.CharField(default=realtime.models.new_epoch, max_length=32),
        ),
    ]
