from django.db import migrations


def create_head(apps, schema_editor):
    apps.get_model("events", "StreamHead").objects.get_or_create(id=1, defaults={"pos": 0})


class Migration(migrations.Migration):
    dependencies = [("events", "0002_initial")]
    operations = [migrations.RunPython(create_head, migrations.RunPython.noop)]
