"""``m.push_rules`` global account data (push.md: clients learn of rule changes through /sync): in
every initial sync (the defaults for a user who never changed a rule), in the next incremental sync
after any rule change, with a wake-up of the user's waiting /syncs, and readable through
``GET /user/{userId}/account_data/m.push_rules``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from accounts.models import AccountData, User
from push.rules import default_ruleset
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.sync_helpers import sync

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db


def push_rules_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["content"] for e in body["account_data"]["events"] if e["type"] == "m.push_rules"]


def account_data_path(user: TestUser) -> str:
    return f"user/{q(user.user_id)}/account_data/m.push_rules"


def test_initial_sync_has_the_default_rules_of_a_user_who_changed_nothing(
    matrix: MatrixClient, alice: TestUser
) -> None:
    assert push_rules_events(sync(matrix, alice)) == [default_ruleset(alice.user_id)]
    assert push_rules_events(sync(matrix, alice)) == [matrix.get("pushrules/", token=alice).json()]
    assert not AccountData.objects.filter(type="m.push_rules").exists()  # synthesized, not stored
    filtered = sync(matrix, alice, filter={"account_data": {"not_types": ["m.push_rules"]}})
    assert push_rules_events(filtered) == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("put", "pushrules/global/content/cake", {"pattern": "cake", "actions": ["notify"]}),
        ("put", "pushrules/global/override/.m.rule.master/enabled", {"enabled": True}),
        ("put", "pushrules/global/underride/.m.rule.message/actions", {"actions": []}),
    ],
)
def test_a_rule_change_is_in_the_next_sync(
    any_prefix_client: MatrixClient, make_user, method: str, path: str, body: dict[str, Any]
) -> None:
    matrix = any_prefix_client
    alice = make_user("alice")
    since = sync(matrix, alice)["next_batch"]
    assert push_rules_events(sync(matrix, alice, since=since)) == []
    getattr(matrix, method)(path, body, token=alice)
    current = matrix.get("pushrules/", token=alice).json()
    assert current != default_ruleset(alice.user_id)
    news = sync(matrix, alice, since=since)
    assert push_rules_events(news) == [current]
    assert push_rules_events(sync(matrix, alice, since=news["next_batch"])) == []
    assert push_rules_events(sync(matrix, alice)) == [current]  # and in initial syncs from now on


def test_deleting_a_rule_is_synced_too(matrix: MatrixClient, alice: TestUser) -> None:
    matrix.put("pushrules/global/sender/@x:test.local", {"actions": ["notify"]}, token=alice)
    since = sync(matrix, alice)["next_batch"]
    matrix.delete("pushrules/global/sender/@x:test.local", token=alice)
    assert push_rules_events(sync(matrix, alice, since=since)) == [default_ruleset(alice.user_id)]


def test_rejected_changes_write_nothing(matrix: MatrixClient, alice: TestUser) -> None:
    since = sync(matrix, alice)["next_batch"]
    matrix.put("pushrules/global/override/.m.rule.nope/enabled", {"enabled": True}, token=alice, expect=404)
    matrix.delete("pushrules/global/override/.m.rule.master", token=alice, expect=400)
    assert push_rules_events(sync(matrix, alice, since=since)) == []
    assert not AccountData.objects.filter(type="m.push_rules").exists()


def test_a_change_wakes_the_users_syncs_at_its_position(
    matrix: MatrixClient,
    alice: TestUser,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from events import notify

    published: list[tuple[int, list[str], list[int]]] = []
    monkeypatch.setattr(
        notify, "_publish", lambda pos, rooms, users, events=0: published.append((pos, rooms, users))
    )
    pk = User.objects.get(mxid=alice.user_id).pk
    with django_capture_on_commit_callbacks(execute=True):
        matrix.put("pushrules/global/override/.m.rule.master/enabled", {"enabled": True}, token=alice)
        matrix.put("pushrules/global/override/.m.rule.master/actions", {"actions": []}, token=alice)
    assert [(rooms, users) for _, rooms, users in published] == [([], [pk])] * 2
    row = AccountData.objects.get(user_id=pk, type="m.push_rules", room_id=None)
    assert row.stream_pos == published[-1][0] > published[0][0]


def test_account_data_endpoint_answers_the_rule_set(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    assert matrix.get(account_data_path(alice), token=alice).json() == default_ruleset(alice.user_id)
    matrix.put("pushrules/global/room/!r:test.local", {"actions": ["notify"]}, token=alice)
    current = matrix.get("pushrules/", token=alice).json()
    assert matrix.get(account_data_path(alice), token=alice).json() == current
    assert_matrix_error(matrix.get(account_data_path(alice), token=bob, expect=None), 403, "M_FORBIDDEN")
    resp = matrix.put(account_data_path(alice), {"global": {}}, token=alice, expect=None)
    assert_matrix_error(resp, 405, "M_BAD_JSON")  # server-managed: clients use /pushrules


def test_the_migration_publishes_rules_changed_before_it(matrix: MatrixClient, alice: TestUser) -> None:
    import importlib

    from django.apps import apps

    from push.models import PushRuleState

    migration = importlib.import_module("push.migrations.0003_push_rules_account_data")
    user = User.objects.get(mxid=alice.user_id)
    PushRuleState.objects.create(user=user, overrides={"override/.m.rule.master": {"enabled": True}})
    migration.forwards(apps, None)
    migration.forwards(apps, None)  # idempotent
    row = AccountData.objects.get(user=user, type="m.push_rules")
    assert row.stream_pos == 0 and row.content == matrix.get("pushrules/", token=alice).json()
    body = sync(matrix, alice)
    assert push_rules_events(body) == [row.content]
    assert push_rules_events(sync(matrix, alice, since=body["next_batch"])) == []
