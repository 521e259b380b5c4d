"""Push rules API (pushrules.yaml) through the real routes: GET /pushrules/, /pushrules/global/,
GET/PUT/DELETE /pushrules/global/{kind}/{ruleId}, and its /enabled and /actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from push.rules import default_ruleset
from tests.matrix_client import MatrixClient, assert_matrix_error, q

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db

# The access token (with its user and device), then the user's rule-state row; measured on SQLite
# and PostgreSQL alike, with no rules and with 20.
GET_PUSHRULES_QUERIES = 2


def rule_path(kind: str, rule_id: str, attr: str | None = None) -> str:
    path = f"pushrules/global/{kind}/{q(rule_id)}"
    return f"{path}/{attr}" if attr else path


def ruleset(matrix: MatrixClient, user: TestUser) -> dict[str, list[dict[str, Any]]]:
    return matrix.get("pushrules/", token=user).json()["global"]


def rule_ids(matrix: MatrixClient, user: TestUser, kind: str, *, user_defined_only: bool = True) -> list[str]:
    return [r["rule_id"] for r in ruleset(matrix, user)[kind] if not (user_defined_only and r["default"])]


def put_rule(
    matrix: MatrixClient,
    user: TestUser,
    kind: str,
    rule_id: str,
    body: dict[str, Any],
    expect: int = 200,
    **query: Any,
) -> Any:
    return matrix.put(rule_path(kind, rule_id), body, token=user, expect=expect, query=query or None)


NOTIFY = {"actions": ["notify"]}


# -- reading -------------------------------------------------------------------------------------------


def test_get_pushrules_is_the_default_ruleset_for_a_new_user(
    any_prefix_client: MatrixClient, make_user
) -> None:
    user = make_user()
    body = any_prefix_client.get("pushrules/", token=user).json()
    assert body == default_ruleset(user.user_id)
    assert list(body["global"]) == ["override", "content", "room", "sender", "underride"]
    assert body["global"]["override"][0] == {
        "rule_id": ".m.rule.master",
        "default": True,
        "enabled": False,
        "conditions": [],
        "actions": [],
    }


def test_get_pushrules_without_trailing_slash(matrix: MatrixClient, alice: TestUser) -> None:
    assert matrix.get("pushrules", token=alice).json() == default_ruleset(alice.user_id)


def test_get_pushrules_global_is_the_global_object(any_prefix_client: MatrixClient, make_user) -> None:
    user = make_user()
    put_rule(any_prefix_client, user, "room", "!r:test", NOTIFY)
    whole = any_prefix_client.get("pushrules/", token=user).json()
    assert any_prefix_client.get("pushrules/global/", token=user).json() == whole["global"]


def test_get_rules_of_one_kind(matrix: MatrixClient, alice: TestUser) -> None:
    put_rule(matrix, alice, "content", "cake", {"pattern": "cake", "actions": ["notify"]})
    content = matrix.get("pushrules/global/content/", token=alice).json()
    assert [r["rule_id"] for r in content] == ["cake"]
    underride = matrix.get("pushrules/global/underride/", token=alice).json()
    assert underride == default_ruleset(alice.user_id)["global"]["underride"]
    assert_matrix_error(
        matrix.get("pushrules/global/nonsense/", token=alice, expect=None), 400, "M_INVALID_PARAM"
    )


def test_get_one_default_rule(any_prefix_client: MatrixClient, make_user) -> None:
    user = make_user()
    rule = any_prefix_client.get(rule_path("underride", ".m.rule.message"), token=user).json()
    assert rule == {
        "rule_id": ".m.rule.message",
        "default": True,
        "enabled": True,
        "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
        "actions": ["notify"],
    }


def test_get_unknown_rule_is_404(matrix: MatrixClient, alice: TestUser) -> None:
    for path in (
        rule_path("override", "nope"),
        rule_path("override", "nope", "enabled"),
        rule_path("override", "nope", "actions"),
        rule_path("content", ".m.rule.master"),  # a default rule under the wrong kind
    ):
        assert_matrix_error(matrix.get(path, token=alice, expect=None), 404, "M_NOT_FOUND")


@pytest.mark.parametrize("attr", [None, "enabled", "actions"])
def test_bad_kind_is_400_invalid_param(matrix: MatrixClient, alice: TestUser, attr: str | None) -> None:
    path = rule_path("global", ".m.rule.master", attr)
    assert_matrix_error(matrix.get(path, token=alice, expect=None), 400, "M_INVALID_PARAM")
    body = {"enabled": False} if attr == "enabled" else NOTIFY
    assert_matrix_error(matrix.put(path, body, token=alice, expect=None), 400, "M_INVALID_PARAM")
    if attr is None:
        assert_matrix_error(matrix.delete(path, token=alice, expect=None), 400, "M_INVALID_PARAM")


def test_push_rules_need_an_access_token(matrix: MatrixClient, db: None) -> None:
    assert_matrix_error(matrix.get("pushrules/", expect=None), 401, "M_MISSING_TOKEN")
    assert_matrix_error(matrix.put(rule_path("room", "!r:test"), NOTIFY, expect=None), 401, "M_MISSING_TOKEN")


def test_wrong_method_is_405_unrecognized(matrix: MatrixClient, alice: TestUser) -> None:
    assert_matrix_error(matrix.post("pushrules/", {}, token=alice, expect=None), 405, "M_UNRECOGNIZED")
    resp = matrix.delete(rule_path("override", ".m.rule.master", "enabled"), token=alice, expect=None)
    assert_matrix_error(resp, 405, "M_UNRECOGNIZED")


# -- PUT a rule ----------------------------------------------------------------------------------------


def test_put_content_rule_then_get_it(any_prefix_client: MatrixClient, make_user) -> None:
    matrix, user = any_prefix_client, make_user()
    resp = put_rule(matrix, user, "content", "nocake", {"pattern": "cake*lie", "actions": ["notify"]})
    assert resp.json() == {}
    expected = {
        "rule_id": "nocake",
        "default": False,
        "enabled": True,
        "actions": ["notify"],
        "pattern": "cake*lie",
    }
    assert matrix.get(rule_path("content", "nocake"), token=user).json() == expected
    assert ruleset(matrix, user)["content"] == [expected]


def test_put_override_rule_sits_after_master_before_other_defaults(
    matrix: MatrixClient, alice: TestUser
) -> None:
    conditions = [{"kind": "event_match", "key": "content.body", "pattern": "ping"}]
    put_rule(matrix, alice, "override", "pings", {"conditions": conditions, "actions": ["notify"]})
    ids = rule_ids(matrix, alice, "override", user_defined_only=False)
    assert ids[:3] == [".m.rule.master", "pings", ".m.rule.suppress_notices"]
    rule = matrix.get(rule_path("override", "pings"), token=alice).json()
    assert rule["conditions"] == conditions and "pattern" not in rule


def test_put_underride_rule_goes_before_the_defaults(matrix: MatrixClient, alice: TestUser) -> None:
    put_rule(matrix, alice, "underride", "all", {"actions": []})  # no conditions: matches everything
    ids = rule_ids(matrix, alice, "underride", user_defined_only=False)
    assert ids[0] == "all" and ids[1] == ".m.rule.call"
    assert matrix.get(rule_path("underride", "all"), token=alice).json()["conditions"] == []


def test_sender_and_room_rules_with_ids_needing_percent_encoding(
    any_prefix_client: MatrixClient, make_user
) -> None:
    matrix, user = any_prefix_client, make_user()
    sender, room = "@bob:test", "!abc/def?x#y:test"
    put_rule(
        matrix, user, "sender", sender, {"actions": ["notify", {"set_tweak": "sound", "value": "default"}]}
    )
    resp = put_rule(matrix, user, "room", room, NOTIFY, expect=400)  # "/" is not allowed in a rule ID
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")
    room = "!abc?x#y %:test"
    put_rule(matrix, user, "room", room, {"actions": []})
    assert matrix.get(rule_path("sender", sender), token=user).json()["rule_id"] == sender
    assert matrix.get(rule_path("room", room), token=user).json() == {
        "rule_id": room,
        "default": False,
        "enabled": True,
        "actions": [],
    }
    matrix.put(rule_path("room", room, "enabled"), {"enabled": False}, token=user)
    assert matrix.get(rule_path("room", room, "enabled"), token=user).json() == {"enabled": False}
    matrix.put(rule_path("sender", sender, "actions"), {"actions": []}, token=user)
    assert matrix.get(rule_path("sender", sender, "actions"), token=user).json() == {"actions": []}
    matrix.delete(rule_path("sender", sender), token=user)
    assert rule_ids(matrix, user, "sender") == []


def test_new_rule_without_before_or_after_is_the_most_important(
    matrix: MatrixClient, alice: TestUser
) -> None:
    for rule_id in ("a", "b", "c"):
        put_rule(matrix, alice, "room", rule_id, NOTIFY)
    assert rule_ids(matrix, alice, "room") == ["c", "b", "a"]


def test_before_and_after_place_new_rules(any_prefix_client: MatrixClient, make_user) -> None:
    matrix, user = any_prefix_client, make_user()
    put_rule(matrix, user, "room", "a", NOTIFY)
    put_rule(matrix, user, "room", "b", NOTIFY, after="a")
    put_rule(matrix, user, "room", "c", NOTIFY, after="b")
    assert rule_ids(matrix, user, "room") == ["a", "b", "c"]
    put_rule(matrix, user, "room", "d", NOTIFY, before="c")
    put_rule(matrix, user, "room", "e", NOTIFY, before="a")
    assert rule_ids(matrix, user, "room") == ["e", "a", "b", "d", "c"]


def test_before_and_after_move_an_existing_rule(matrix: MatrixClient, alice: TestUser) -> None:
    for rule_id in ("c", "b", "a"):
        put_rule(matrix, alice, "content", rule_id, {"pattern": rule_id, "actions": []})
    assert rule_ids(matrix, alice, "content") == ["a", "b", "c"]
    put_rule(matrix, alice, "content", "a", {"pattern": "new", "actions": ["notify"]}, after="c")
    assert rule_ids(matrix, alice, "content") == ["b", "c", "a"]
    assert matrix.get(rule_path("content", "a"), token=alice).json()["pattern"] == "new"
    put_rule(matrix, alice, "content", "c", {"pattern": "c", "actions": []}, before="b")
    assert rule_ids(matrix, alice, "content") == ["c", "b", "a"]


def test_before_wins_over_after(matrix: MatrixClient, alice: TestUser) -> None:
    put_rule(matrix, alice, "room", "a", NOTIFY)
    put_rule(matrix, alice, "room", "b", NOTIFY, after="a")
    put_rule(matrix, alice, "room", "x", NOTIFY, before="b", after="a")
    assert rule_ids(matrix, alice, "room") == ["a", "x", "b"]


def test_replacing_a_rule_keeps_its_place_and_enabled_flag(matrix: MatrixClient, alice: TestUser) -> None:
    put_rule(matrix, alice, "room", "a", NOTIFY)
    put_rule(matrix, alice, "room", "b", NOTIFY)
    matrix.put(rule_path("room", "a", "enabled"), {"enabled": False}, token=alice)
    put_rule(matrix, alice, "room", "a", {"actions": []})
    assert rule_ids(matrix, alice, "room") == ["b", "a"]
    assert matrix.get(rule_path("room", "a"), token=alice).json() == {
        "rule_id": "a",
        "default": False,
        "enabled": False,
        "actions": [],
    }


@pytest.mark.parametrize(
    ("query", "message_part"),
    [
        ({"before": "missing"}, "missing"),
        ({"after": "missing"}, "missing"),
        ({"after": ".m.rule.message"}, ""),
    ],
)
def test_unknown_or_server_default_anchor_is_400_unknown(
    matrix: MatrixClient, alice: TestUser, query: dict[str, str], message_part: str
) -> None:
    put_rule(matrix, alice, "underride", "mine", NOTIFY)
    body = assert_matrix_error(
        put_rule(matrix, alice, "underride", "new", NOTIFY, expect=400, **query), 400, "M_UNKNOWN"
    )
    assert message_part in body["error"]
    assert rule_ids(matrix, alice, "underride") == ["mine"]


def test_anchor_of_another_kind_is_not_found(matrix: MatrixClient, alice: TestUser) -> None:
    put_rule(matrix, alice, "room", "a", NOTIFY)
    assert_matrix_error(
        put_rule(matrix, alice, "sender", "@x:test", NOTIFY, expect=400, after="a"), 400, "M_UNKNOWN"
    )


@pytest.mark.parametrize("rule_id", [".m.rule.master", ".m.rule.message", ".mine", "back\\slash"])
def test_put_of_a_reserved_or_invalid_rule_id_is_rejected(
    matrix: MatrixClient, alice: TestUser, rule_id: str
) -> None:
    kind = "underride" if rule_id == ".m.rule.message" else "override"
    before = ruleset(matrix, alice)
    assert_matrix_error(put_rule(matrix, alice, kind, rule_id, NOTIFY, expect=400), 400, "M_INVALID_PARAM")
    assert ruleset(matrix, alice) == before


@pytest.mark.parametrize(
    ("kind", "body", "errcode"),
    [
        ("room", {}, "M_MISSING_PARAM"),
        ("room", {"actions": "notify"}, "M_INVALID_PARAM"),
        ("room", {"actions": ["explode"]}, "M_INVALID_PARAM"),
        ("room", {"actions": [{"value": 1}]}, "M_INVALID_PARAM"),
        ("content", {"actions": []}, "M_MISSING_PARAM"),
        ("content", {"pattern": 5, "actions": []}, "M_INVALID_PARAM"),
        ("override", {"conditions": {"kind": "event_match"}, "actions": []}, "M_INVALID_PARAM"),
        (
            "override",
            {"conditions": [{"kind": "event_match", "key": "type"}], "actions": []},
            "M_INVALID_PARAM",
        ),
        (
            "underride",
            {"conditions": [{"kind": "room_member_count", "is": "two"}], "actions": []},
            "M_INVALID_PARAM",
        ),
        ("room", ["notify"], "M_BAD_JSON"),
    ],
)
def test_put_with_an_invalid_body_is_400(
    matrix: MatrixClient, alice: TestUser, kind: str, body: Any, errcode: str
) -> None:
    assert_matrix_error(matrix.put(rule_path(kind, "r"), body, token=alice, expect=None), 400, errcode)
    assert_matrix_error(matrix.get(rule_path(kind, "r"), token=alice, expect=None), 404, "M_NOT_FOUND")


def test_put_with_a_non_json_body_is_400(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.request("PUT", rule_path("room", "r"), raw=b"{not json", token=alice, expect=None)
    assert resp.status_code == 400 and resp.json()["errcode"] in {"M_NOT_JSON", "M_BAD_JSON"}


def test_historical_actions_are_stripped(matrix: MatrixClient, alice: TestUser) -> None:
    put_rule(matrix, alice, "room", "r", {"actions": ["notify", "coalesce", "dont_notify"]})
    assert matrix.get(rule_path("room", "r", "actions"), token=alice).json() == {"actions": ["notify"]}


# -- DELETE --------------------------------------------------------------------------------------------


def test_delete_a_user_rule(any_prefix_client: MatrixClient, make_user) -> None:
    matrix, user = any_prefix_client, make_user()
    put_rule(matrix, user, "room", "a", NOTIFY)
    put_rule(matrix, user, "room", "b", NOTIFY)
    assert matrix.delete(rule_path("room", "a"), token=user).json() == {}
    assert rule_ids(matrix, user, "room") == ["b"]
    assert_matrix_error(matrix.get(rule_path("room", "a"), token=user, expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(matrix.delete(rule_path("room", "a"), token=user, expect=None), 404, "M_NOT_FOUND")


def test_delete_unknown_rule_is_404(matrix: MatrixClient, alice: TestUser) -> None:
    assert_matrix_error(
        matrix.delete(rule_path("override", "nope"), token=alice, expect=None), 404, "M_NOT_FOUND"
    )


def test_server_default_rules_cannot_be_deleted(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.delete(rule_path("override", ".m.rule.master"), token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")
    assert ruleset(matrix, alice) == default_ruleset(alice.user_id)["global"]


def test_deleting_a_rule_of_one_kind_leaves_the_same_id_of_another_kind(
    matrix: MatrixClient, alice: TestUser
) -> None:
    put_rule(matrix, alice, "room", "same", NOTIFY)
    put_rule(matrix, alice, "content", "same", {"pattern": "x", "actions": []})
    matrix.delete(rule_path("room", "same"), token=alice)
    assert rule_ids(matrix, alice, "room") == []
    assert rule_ids(matrix, alice, "content") == ["same"]


# -- /enabled ------------------------------------------------------------------------------------------


def test_disabling_a_default_rule_shows_in_get_pushrules(any_prefix_client: MatrixClient, make_user) -> None:
    matrix, user = any_prefix_client, make_user()
    path = rule_path("underride", ".m.rule.message", "enabled")
    assert matrix.get(path, token=user).json() == {"enabled": True}
    assert matrix.put(path, {"enabled": False}, token=user).json() == {}
    assert matrix.get(path, token=user).json() == {"enabled": False}
    message = next(r for r in ruleset(matrix, user)["underride"] if r["rule_id"] == ".m.rule.message")
    assert message["enabled"] is False and message["default"] is True
    assert message["actions"] == ["notify"]  # only the flag changed
    matrix.put(path, {"enabled": True}, token=user)
    assert ruleset(matrix, user) == default_ruleset(user.user_id)["global"]


def test_enabling_the_master_rule(matrix: MatrixClient, alice: TestUser) -> None:
    matrix.put(rule_path("override", ".m.rule.master", "enabled"), {"enabled": True}, token=alice)
    master = ruleset(matrix, alice)["override"][0]
    assert master["rule_id"] == ".m.rule.master" and master["enabled"] is True


def test_disabling_a_user_rule(matrix: MatrixClient, alice: TestUser) -> None:
    put_rule(matrix, alice, "room", "r", NOTIFY)
    matrix.put(rule_path("room", "r", "enabled"), {"enabled": False}, token=alice)
    assert matrix.get(rule_path("room", "r"), token=alice).json()["enabled"] is False
    assert ruleset(matrix, alice)["room"][0]["enabled"] is False


@pytest.mark.parametrize(
    ("body", "status", "errcode"),
    [({}, 400, "M_MISSING_PARAM"), ({"enabled": "yes"}, 400, "M_INVALID_PARAM"), ([True], 400, "M_BAD_JSON")],
)
def test_put_enabled_with_a_bad_body(
    matrix: MatrixClient, alice: TestUser, body: Any, status: int, errcode: str
) -> None:
    resp = matrix.put(rule_path("override", ".m.rule.master", "enabled"), body, token=alice, expect=None)
    assert_matrix_error(resp, status, errcode)


def test_put_enabled_of_unknown_rule_is_404(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.put(rule_path("room", "nope", "enabled"), {"enabled": True}, token=alice, expect=None)
    assert_matrix_error(resp, 404, "M_NOT_FOUND")
    assert ruleset(matrix, alice) == default_ruleset(alice.user_id)["global"]


# -- /actions ------------------------------------------------------------------------------------------


def test_get_and_set_actions_of_a_default_rule(any_prefix_client: MatrixClient, make_user) -> None:
    matrix, user = any_prefix_client, make_user()
    path = rule_path("override", ".m.rule.invite_for_me", "actions")
    assert matrix.get(path, token=user).json() == {
        "actions": ["notify", {"set_tweak": "sound", "value": "default"}]
    }
    new = ["notify", {"set_tweak": "highlight", "value": False}]
    assert matrix.put(path, {"actions": new}, token=user).json() == {}
    assert matrix.get(path, token=user).json() == {"actions": new}
    invite = next(r for r in ruleset(matrix, user)["override"] if r["rule_id"] == ".m.rule.invite_for_me")
    assert invite["actions"] == new and invite["enabled"] is True and invite["default"] is True


def test_actions_and_enabled_overrides_combine(matrix: MatrixClient, alice: TestUser) -> None:
    matrix.put(rule_path("underride", ".m.rule.call", "actions"), {"actions": []}, token=alice)
    matrix.put(rule_path("underride", ".m.rule.call", "enabled"), {"enabled": False}, token=alice)
    call = matrix.get(rule_path("underride", ".m.rule.call"), token=alice).json()
    assert (call["actions"], call["enabled"]) == ([], False)


def test_set_actions_of_a_user_rule(matrix: MatrixClient, alice: TestUser) -> None:
    put_rule(matrix, alice, "content", "c", {"pattern": "x", "actions": ["notify"]})
    matrix.put(
        rule_path("content", "c", "actions"), {"actions": [{"set_tweak": "sound", "value": "x"}]}, token=alice
    )
    rule = matrix.get(rule_path("content", "c"), token=alice).json()
    assert rule["actions"] == [{"set_tweak": "sound", "value": "x"}] and rule["pattern"] == "x"


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({}, "M_MISSING_PARAM"),
        ({"actions": "notify"}, "M_INVALID_PARAM"),
        ({"actions": [1]}, "M_INVALID_PARAM"),
        ("notify", "M_BAD_JSON"),
    ],
)
def test_put_actions_with_a_bad_body(matrix: MatrixClient, alice: TestUser, body: Any, errcode: str) -> None:
    resp = matrix.put(rule_path("underride", ".m.rule.message", "actions"), body, token=alice, expect=None)
    assert_matrix_error(resp, 400, errcode)
    assert matrix.get(rule_path("underride", ".m.rule.message", "actions"), token=alice).json() == {
        "actions": ["notify"]
    }


def test_put_actions_of_unknown_rule_is_404(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.put(rule_path("override", "nope", "actions"), {"actions": []}, token=alice, expect=None)
    assert_matrix_error(resp, 404, "M_NOT_FOUND")


# -- per user, query counts ----------------------------------------------------------------------------


def test_another_users_rules_are_unaffected(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    put_rule(matrix, alice, "room", "!r:test", NOTIFY)
    put_rule(matrix, alice, "content", "c", {"pattern": "x", "actions": []})
    matrix.put(rule_path("underride", ".m.rule.message", "enabled"), {"enabled": False}, token=alice)
    matrix.put(rule_path("override", ".m.rule.master", "actions"), {"actions": ["notify"]}, token=alice)
    assert ruleset(matrix, bob) == default_ruleset(bob.user_id)["global"]
    assert_matrix_error(matrix.get(rule_path("room", "!r:test"), token=bob, expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(
        matrix.delete(rule_path("room", "!r:test"), token=bob, expect=None), 404, "M_NOT_FOUND"
    )
    assert rule_ids(matrix, alice, "room") == ["!r:test"]


def test_default_rules_use_the_users_own_id(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    matrix.put(rule_path("override", ".m.rule.master", "enabled"), {"enabled": True}, token=alice)
    invite = matrix.get(rule_path("override", ".m.rule.invite_for_me"), token=alice).json()
    assert {"kind": "event_match", "key": "state_key", "pattern": alice.user_id} in invite["conditions"]


@pytest.mark.parametrize("rule_count", [0, 20])
def test_get_pushrules_query_count_is_bounded(
    matrix: MatrixClient, alice: TestUser, rule_count: int, django_assert_max_num_queries: Any
) -> None:
    for i in range(rule_count):
        put_rule(
            matrix, alice, "room" if i % 2 else "content", f"r{i}", {"pattern": "p", "actions": ["notify"]}
        )
    matrix.put(rule_path("underride", ".m.rule.message", "enabled"), {"enabled": False}, token=alice)
    with django_assert_max_num_queries(GET_PUSHRULES_QUERIES):
        body = matrix.get("pushrules/", token=alice).json()
    assert len([r for kind in body["global"].values() for r in kind if not r["default"]]) == rule_count


@pytest.mark.django_db(transaction=True)
def test_concurrent_puts_lose_no_update(make_user) -> None:
    """Eight clients PUT rules and flip flags for one user at once: every change survives (the
    user's rule-state row is locked for each read-modify-write)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    user = make_user()

    def client_work(i: int) -> None:
        try:
            matrix = MatrixClient("v3")
            put_rule(matrix, user, "room", f"!r{i}:test", NOTIFY)
            put_rule(matrix, user, "content", f"c{i}", {"pattern": f"p{i}", "actions": []})
            attr_rule = (".m.rule.call", ".m.rule.message", ".m.rule.encrypted", ".m.rule.room_one_to_one")[
                i % 4
            ]
            if i < 4:
                matrix.put(rule_path("underride", attr_rule, "enabled"), {"enabled": False}, token=user)
            else:
                matrix.put(rule_path("underride", attr_rule, "actions"), {"actions": []}, token=user)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(client_work, range(8)))
    matrix = MatrixClient("v3")
    assert sorted(rule_ids(matrix, user, "room")) == sorted(f"!r{i}:test" for i in range(8))
    assert sorted(rule_ids(matrix, user, "content")) == sorted(f"c{i}" for i in range(8))
    underride = {r["rule_id"]: r for r in ruleset(matrix, user)["underride"]}
    for rule_id in (".m.rule.call", ".m.rule.message", ".m.rule.encrypted", ".m.rule.room_one_to_one"):
        assert (underride[rule_id]["enabled"], underride[rule_id]["actions"]) == (False, [])
