"""Users who changed their push rules before ``m.push_rules`` account data existed get its row now,
so /sync sends their rule set (not the defaults) in an initial sync. Position 0: at or below every
sync head (initial syncs include it), never newer than a ``since`` (no incremental sync re-sends it)."""

from django.db import migrations

from push.rules import merge_ruleset

PUSH_RULES = "m.push_rules"


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    PushRuleState = apps.get_model("push", "PushRuleState")
    AccountData = apps.get_model("accounts", "AccountData")
    for state in PushRuleState.objects.select_related("user").iterator():
        if not AccountData.objects.filter(user_id=state.user_id, room_id=None, type=PUSH_RULES).exists():
            AccountData.objects.create(
                user_id=state.user_id,
                room_id=None,
                type=PUSH_RULES,
                content=merge_ruleset(state.user.mxid, state.overrides, state.custom),
                stream_pos=0,
            )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_account_data"),
        ("push", "0002_push_actions"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
