"""Push rules: the predefined rule set, user rules merged around it, PUT validation, evaluation. Pure.

Everything here follows the client-server spec, "Push Notifications" module (push.md), and the
``/pushrules`` API (pushrules.yaml, definitions/push_rule*.yaml, push_condition.yaml):

* A rule set is the ``GET /pushrules/`` shape: ``{"global": {kind: [rule, ...]}}`` for the five kinds
  in checking order ``override``, ``content``, ``room``, ``sender``, ``underride``. A rule is
  ``{"rule_id", "default", "enabled", "actions"}`` plus ``conditions`` (override/underride) or
  ``pattern`` (content); room and sender rules are defined by their ``rule_id`` alone.
* "Homeservers can specify server-default rules. They operate at a lower priority than user-defined
  rules, except for the ``.m.rule.master`` rule which has always a higher priority than any other
  rule." So within a kind: ``.m.rule.master`` (override only), then the user's rules, then the
  remaining server-default rules.
* Since v1.17 (MSC4210) the legacy body-mention defaults (``.m.rule.contains_display_name``,
  ``.m.rule.roomnotif``, ``.m.rule.contains_user_name``) are gone: the current spec has no default
  content rules. The ``contains_display_name`` *condition* is deprecated but still defined, so
  user-defined rules using it still work.
* The first enabled rule that matches decides the actions; no match means no notification. Servers
  never notify a user about their own events (``should_count``).

Storage is the caller's business. The shapes this module expects:

* ``overrides``: ``{"<kind>/<rule_id>": {"enabled"?: bool, "actions"?: list}}`` for server-default
  rules whose enabled flag or actions the user changed (``PUT .../enabled`` and ``.../actions``).
* ``custom``: the user's own rules, each a rule dict (as ``validate_rule`` returns it) plus
  ``"kind"``, listed most important first within a kind (``insert_rule`` keeps a kind's list in
  that order).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from matrixsrv.dotted_paths import split_dotted_path
from matrixsrv.errors import BadJson, InvalidParam, MissingParam, NotFound, Unknown

# The kinds in the order they are checked (push.md, "Push Rules").
KINDS = ("override", "content", "room", "sender", "underride")
CONDITION_KINDS_OF = frozenset({"override", "underride"})  # kinds that carry ``conditions``

MASTER_RULE_ID = ".m.rule.master"
# "Older versions of the Matrix specification included the dont_notify and coalesce actions.
# Clients and homeservers MUST ignore these actions, for instance, by stripping them."
HISTORICAL_ACTIONS = frozenset({"dont_notify", "coalesce"})

# notifications.room "Defaults to 50 if unspecified" (m.room.power_levels); any other missing
# key gets the same default, like events/power_levels.PowerLevels.notification_level.
DEFAULT_NOTIFICATION_LEVEL = 50

# Canonical JSON integers are in [-(2**53)+1, (2**53)-1] (appendices, "Canonical JSON").
_MAX_INT = 2**53 - 1

_NOTIFY = "notify"
_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


# -- the predefined rules ----------------------------------------------------------------------------


def _rule(
    rule_id: str, conditions: list[dict[str, Any]], actions: list[Any], *, enabled: bool = True
) -> dict[str, Any]:
    return {
        "rule_id": rule_id,
        "default": True,
        "enabled": enabled,
        "conditions": conditions,
        "actions": actions,
    }


def _match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _default_override(user_id: str) -> list[dict[str, Any]]:
    """The spec's "Default Override Rules", in its order."""
    return [
        _rule(MASTER_RULE_ID, [], [], enabled=False),
        _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
        _rule(
            ".m.rule.invite_for_me",
            [
                _match("type", "m.room.member"),
                _match("content.membership", "invite"),
                _match("state_key", user_id),
            ],
            [_NOTIFY, dict(_SOUND_DEFAULT)],
        ),
        _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
        _rule(
            ".m.rule.is_user_mention",
            [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": user_id}],
            [_NOTIFY, dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.is_room_mention",
            [
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ],
            [_NOTIFY, dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.tombstone",
            [_match("type", "m.room.tombstone"), _match("state_key", "")],
            [_NOTIFY, dict(_HIGHLIGHT)],
        ),
        _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
        _rule(".m.rule.room.server_acl", [_match("type", "m.room.server_acl"), _match("state_key", "")], []),
        _rule(
            ".m.rule.suppress_edits",
            [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}],
            [],
        ),
    ]


def _default_underride() -> list[dict[str, Any]]:
    """The spec's "Default Underride Rules", in its order."""
    one_to_one = {"kind": "room_member_count", "is": "2"}
    return [
        _rule(
            ".m.rule.call",
            [_match("type", "m.call.invite")],
            [_NOTIFY, {"set_tweak": "sound", "value": "ring"}],
        ),
        _rule(
            ".m.rule.encrypted_room_one_to_one",
            [dict(one_to_one), _match("type", "m.room.encrypted")],
            [_NOTIFY, dict(_SOUND_DEFAULT)],
        ),
        _rule(
            ".m.rule.room_one_to_one",
            [dict(one_to_one), _match("type", "m.room.message")],
            [_NOTIFY, dict(_SOUND_DEFAULT)],
        ),
        _rule(".m.rule.message", [_match("type", "m.room.message")], [_NOTIFY]),
        _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], [_NOTIFY]),
    ]


def default_ruleset(user_id: str) -> dict[str, Any]:
    """The spec's predefined rules for ``user_id`` in the ``GET /pushrules/`` shape (fresh dicts)."""
    return {
        "global": {
            "override": _default_override(user_id),
            "content": [],  # the legacy .m.rule.contains_user_name was removed in v1.17 (MSC4210)
            "room": [],
            "sender": [],
            "underride": _default_underride(),
        }
    }


# -- merging the user's rules with the defaults -----------------------------------------------------


def rule_key(kind: str, rule_id: str) -> str:
    """The ``overrides`` key of a rule: ``"<kind>/<rule_id>"``."""
    return f"{kind}/{rule_id}"


def _public_rule(rule: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """A stored user rule in the GET shape: only the keys its kind has, ``default`` false."""
    out: dict[str, Any] = {
        "rule_id": rule["rule_id"],
        "default": False,
        "enabled": bool(rule.get("enabled", True)),
        "actions": copy.deepcopy(list(rule.get("actions", []))),
    }
    if kind in CONDITION_KINDS_OF:
        out["conditions"] = copy.deepcopy(list(rule.get("conditions", [])))
    elif kind == "content":
        out["pattern"] = rule.get("pattern", "")
    return out


def merge_ruleset(
    user_id: str, overrides: Mapping[str, Mapping[str, Any]], custom: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The user's effective rule set (``GET /pushrules/`` shape).

    ``overrides`` change the ``enabled`` flag and/or ``actions`` of server-default rules (keys of
    ``rule_key``; keys naming no default rule are ignored). ``custom`` are the user's rules with a
    ``kind``, most important first within each kind; rules of an unknown kind or with a reserved
    ``.``-prefixed ID are ignored. Order per kind: ``.m.rule.master``, the user's rules, the other
    defaults.
    """
    ruleset = default_ruleset(user_id)
    merged = ruleset["global"]
    for kind in KINDS:
        for rule in merged[kind]:
            change = overrides.get(rule_key(kind, rule["rule_id"]))
            if change is None:
                continue
            if "enabled" in change:
                rule["enabled"] = bool(change["enabled"])
            if "actions" in change:
                rule["actions"] = copy.deepcopy(list(change["actions"]))
    user_rules: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for rule in custom:
        rule_kind = rule.get("kind")
        if rule_kind in user_rules and not str(rule.get("rule_id", ".")).startswith("."):
            user_rules[rule_kind].append(_public_rule(rule, rule_kind))
    for kind in KINDS:
        defaults = merged[kind]
        if kind == "override":
            merged[kind] = defaults[:1] + user_rules[kind] + defaults[1:]
        else:
            merged[kind] = user_rules[kind] + defaults
    return ruleset


def find_rule(ruleset: Mapping[str, Any], kind: str, rule_id: str) -> dict[str, Any]:
    """The rule ``kind``/``rule_id`` of a rule set, or 404 M_NOT_FOUND (also for an unknown kind)."""
    rules = _kinds_of(ruleset).get(kind, []) if kind in KINDS else []
    for rule in rules:
        if rule["rule_id"] == rule_id:
            return rule  # type: ignore[no-any-return]
    raise NotFound("The push rule was not found.")


def insert_rule(
    rules_of_kind: Sequence[Mapping[str, Any]],
    rule: Mapping[str, Any],
    before: str | None = None,
    after: str | None = None,
) -> list[dict[str, Any]]:
    """``PUT /pushrules/global/{kind}/{ruleId}`` on the user's rules of one kind (most important
    first); returns the new list and leaves the input alone.

    * An existing rule with the same ``rule_id`` is replaced; it keeps its place (and its
      ``enabled`` flag) unless ``before``/``after`` moves it.
    * A new rule is enabled ("When creating push rules, they MUST be enabled by default") and goes
      first ("the most important user defined rule among rules of the same kind") unless placed.
    * ``before``: the rule becomes the next more important rule than the anchor; ``after``: the next
      less important. With both, ``before`` wins ("must be the next most important rule with respect
      to the rule identified by ``before``"); ``after`` is ignored, as in Synapse.
    * A missing anchor, or one naming a server-default rule ("It is not possible to add a rule
      relative to a predefined server rule"), is 400 M_UNKNOWN, as the spec's example response
      ("before/after rule not found: someRuleId").
    """
    rules = [dict(r) for r in rules_of_kind]
    new = dict(rule)
    index = next((i for i, r in enumerate(rules) if r["rule_id"] == new["rule_id"]), None)
    if index is None:
        new["enabled"] = True
    else:
        new["enabled"] = rules[index].get("enabled", True)
        if before is None and after is None:
            rules[index] = new
            return rules
        del rules[index]
    anchor = before if before is not None else after
    if anchor is None:
        return [new, *rules]
    if anchor.startswith("."):
        raise Unknown(f"Cannot add a rule relative to the server-default rule {anchor}")
    position = next((i for i, r in enumerate(rules) if r["rule_id"] == anchor), None)
    if position is None:
        raise Unknown(f"before/after rule not found: {anchor}")
    rules.insert(position if before is not None else position + 1, new)
    return rules


# -- validating a PUT body ---------------------------------------------------------------------------


def check_kind(kind: str) -> None:
    """400 M_INVALID_PARAM for a kind outside the API's enum."""
    if kind not in KINDS:
        raise InvalidParam(f"Unknown push rule kind: {kind!r}")


def _is_historical(action: object) -> bool:
    return isinstance(action, str) and action in HISTORICAL_ACTIONS


def validate_actions(actions: object) -> list[Any]:
    """The ``actions`` of a PUT body (also ``PUT .../actions``), historical actions stripped.

    Strings: ``notify``; the historical ``dont_notify``/``coalesce`` are dropped, not rejected (spec
    v1.12). Objects: ``{"set_tweak": <string>, "value"?: any}``, passed through as given ("Tweaks are
    passed transparently"). Anything else is 400 M_INVALID_PARAM.
    """
    if not isinstance(actions, list):
        raise InvalidParam("'actions' must be an array")
    result: list[Any] = []
    for action in actions:
        if _is_historical(action):
            continue
        if action == _NOTIFY:
            result.append(action)
        elif isinstance(action, Mapping) and isinstance(action.get("set_tweak"), str):
            result.append(copy.deepcopy(dict(action)))
        else:
            raise InvalidParam(f"Unrecognised action: {action!r}")
    return result


_MEMBER_COUNT = re.compile(r"(==|<=|>=|<|>)?([0-9]+)")


def _is_scalar(value: object) -> bool:
    """A non-compound canonical JSON value: string, integer in range, boolean or null."""
    if value is None or isinstance(value, str | bool):
        return True
    return type(value) is int and -_MAX_INT <= value <= _MAX_INT


def _validate_condition(condition: object) -> dict[str, Any]:
    if not isinstance(condition, Mapping) or not isinstance(condition.get("kind"), str):
        raise InvalidParam("Each condition must be an object with a string 'kind'")
    kind = condition["kind"]
    # Required parameters per push_condition.yaml. Unknown kinds are stored as given: they "MUST NOT
    # match any events", which is evaluate's job, not a reason to reject the rule.
    string_params = {
        "event_match": ("key", "pattern"),
        "event_property_is": ("key",),
        "event_property_contains": ("key",),
        "sender_notification_permission": ("key",),
        "room_member_count": ("is",),
    }.get(kind, ())
    for name in string_params:
        if not isinstance(condition.get(name), str):
            raise InvalidParam(f"Condition {kind} needs a string '{name}'")
    if kind in ("event_property_is", "event_property_contains") and (
        "value" not in condition or not _is_scalar(condition["value"])
    ):
        raise InvalidParam(f"Condition {kind} needs a 'value' that is a string, integer, boolean or null")
    if kind == "room_member_count" and _MEMBER_COUNT.fullmatch(condition["is"]) is None:
        raise InvalidParam("Condition room_member_count needs 'is' like '2', '==2', '<2', '>=10'")
    return copy.deepcopy(dict(condition))


def validate_rule(kind: str, rule_id: str, body: object) -> dict[str, Any]:
    """Check a ``PUT /pushrules/global/{kind}/{ruleId}`` body; return the rule in the GET shape
    (``default`` false, ``enabled`` true — ``insert_rule`` keeps an updated rule's flag).

    * unknown ``kind`` → 400 M_INVALID_PARAM (the path parameter is an enum);
    * ``rule_id`` empty, starting with ``.`` (reserved for server-default rules) or containing ``/``
      or ``\\`` → 400 M_INVALID_PARAM ("the request MUST be rejected");
    * body not an object → 400 M_BAD_JSON; ``actions`` missing → 400 M_MISSING_PARAM, invalid →
      400 M_INVALID_PARAM (``validate_actions``);
    * override/underride: ``conditions`` optional ("A rule with no conditions always matches"),
      an array of condition objects; content: ``pattern`` required, a string. Keys that do not
      apply to the kind are ignored.
    """
    check_kind(kind)
    if not rule_id or rule_id.startswith(".") or "/" in rule_id or "\\" in rule_id:
        raise InvalidParam(f"Invalid push rule ID: {rule_id!r}")
    if not isinstance(body, Mapping):
        raise BadJson("The push rule must be a JSON object")
    if "actions" not in body:
        raise MissingParam("Missing 'actions'")
    rule: dict[str, Any] = {
        "rule_id": rule_id,
        "default": False,
        "enabled": True,
        "actions": validate_actions(body["actions"]),
    }
    if kind in CONDITION_KINDS_OF:
        conditions = body.get("conditions", [])
        if not isinstance(conditions, list):
            raise InvalidParam("'conditions' must be an array")
        rule["conditions"] = [_validate_condition(c) for c in conditions]
    elif kind == "content":
        if "pattern" not in body:
            raise MissingParam("Content rules need a 'pattern'")
        if not isinstance(body["pattern"], str):
            raise InvalidParam("'pattern' must be a string")
        rule["pattern"] = body["pattern"]
    return rule


# -- evaluation ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushContext:
    """What the conditions need beyond the event, for one recipient and one event.

    ``room_member_count`` is the room's joined member count; ``sender_power_level`` the sender's
    level (None: unknown, so ``sender_notification_permission`` never matches);
    ``notification_power_levels`` the power levels' ``notifications`` object (missing keys: 50).
    ``user_display_name`` is the recipient's display name in the room, if any.
    """

    user_id: str
    user_display_name: str | None = None
    room_member_count: int = 0
    sender_power_level: int | None = None
    notification_power_levels: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


_ABSENT = object()
_WORD_CHAR = "A-Za-z0-9_"  # word boundary: "any character not in the sets [A-Z], [a-z], [0-9] or _"


def split_key(key: str) -> list[str]:
    """A dot-separated property path into names (appendices, "Dot-separated property paths")."""
    return list(_split_key(key))


@lru_cache(maxsize=1024)
def _split_key(key: str) -> tuple[str, ...]:
    """``split_key`` memoized: conditions use a handful of keys, looked up for every recipient."""
    return split_dotted_path(key)


def _lookup(event: Mapping[str, Any], key: str) -> Any:
    value: Any = event
    for name in _split_key(key):
        if not isinstance(value, Mapping) or name not in value:
            return _ABSENT
        value = value[name]
    return value


@lru_cache(maxsize=1024)
def _glob_regex(pattern: str, word_boundary: bool) -> re.Pattern[str]:
    """Glob (``*`` any run, ``?`` one character; everything else literal) as a case-insensitive
    regex: the whole value, or with ``word_boundary`` any substring between word boundaries."""
    pattern = re.sub(r"\*+", "*", pattern)  # a run of stars is one star (and no extra backtracking)
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    if word_boundary:
        return re.compile(rf"(?<![{_WORD_CHAR}])(?:{body})(?![{_WORD_CHAR}])", re.IGNORECASE | re.DOTALL)
    return re.compile(rf"(?:{body})\Z", re.IGNORECASE | re.DOTALL)


@lru_cache(maxsize=1024)
def _display_name_regex(name: str) -> re.Pattern[str]:
    """The display name as a literal (not a glob) between word boundaries, case-insensitive."""
    return re.compile(rf"(?<![{_WORD_CHAR}]){re.escape(name)}(?![{_WORD_CHAR}])", re.IGNORECASE)


def glob_matches(pattern: str, value: str, *, word_boundary: bool = False) -> bool:
    regex = _glob_regex(pattern, word_boundary)
    return (regex.search(value) if word_boundary else regex.match(value)) is not None


def _same_scalar(a: object, b: object) -> bool:
    """Exact canonical-JSON equality: ``true`` is not ``1``, ``"1"`` is not ``1``."""
    return _is_scalar(a) and _is_scalar(b) and type(a) is type(b) and a == b


def _member_count_matches(spec: object, count: int) -> bool:
    match = _MEMBER_COUNT.fullmatch(spec) if isinstance(spec, str) else None
    if match is None:
        return False
    op, number = match.group(1) or "==", int(match.group(2))
    return {
        "==": count == number,
        "<": count < number,
        ">": count > number,
        "<=": count <= number,
        ">=": count >= number,
    }[op]


def condition_matches(condition: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    """One push condition against an event; unknown or malformed conditions never match."""
    kind = condition.get("kind")
    key = condition.get("key")
    if kind == "event_match":
        pattern = condition.get("pattern")
        value = _lookup(event, key) if isinstance(key, str) else _ABSENT
        if not isinstance(pattern, str) or not isinstance(value, str):
            return False  # absent or not a string: no match, "even if pattern is *"
        return glob_matches(pattern, value, word_boundary=key == "content.body")
    if kind == "event_property_is":
        value = _lookup(event, key) if isinstance(key, str) else _ABSENT
        return "value" in condition and _same_scalar(value, condition["value"])
    if kind == "event_property_contains":
        values = _lookup(event, key) if isinstance(key, str) else _ABSENT
        if not isinstance(values, list) or "value" not in condition:
            return False
        return any(_same_scalar(item, condition["value"]) for item in values)
    if kind == "contains_display_name":
        body = _lookup(event, "content.body")
        name = ctx.user_display_name
        if not name or not isinstance(body, str):
            return False
        return _display_name_regex(name).search(body) is not None
    if kind == "room_member_count":
        return _member_count_matches(condition.get("is"), ctx.room_member_count)
    if kind == "sender_notification_permission":
        if not isinstance(key, str) or ctx.sender_power_level is None:
            return False
        return ctx.sender_power_level >= ctx.notification_power_levels.get(key, DEFAULT_NOTIFICATION_LEVEL)
    return False


def rule_matches(kind: str, rule: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    """Whether an (enabled or not) rule of ``kind`` matches: override/underride by all their
    conditions; content by ``pattern`` on ``content.body`` (word boundaries); room by
    ``room_id == rule_id``; sender by ``sender == rule_id``."""
    if kind in CONDITION_KINDS_OF:
        conditions = rule.get("conditions", [])
        return isinstance(conditions, list) and all(
            isinstance(c, Mapping) and condition_matches(c, event, ctx) for c in conditions
        )
    if kind == "content":
        pattern = rule.get("pattern")
        body = _lookup(event, "content.body")
        if not isinstance(pattern, str) or not isinstance(body, str):
            return False
        return glob_matches(pattern, body, word_boundary=True)
    if kind == "room":
        return bool(event.get("room_id") == rule["rule_id"])
    if kind == "sender":
        return bool(event.get("sender") == rule["rule_id"])
    return False


def _kinds_of(ruleset: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept ``{"global": {...}}`` (GET /pushrules/) or the inner ruleset (GET /pushrules/global/)."""
    inner = ruleset.get("global")
    return inner if isinstance(inner, Mapping) else ruleset


def evaluate_rule(
    ruleset: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext
) -> tuple[str, Mapping[str, Any]] | None:
    """The first enabled matching rule, as ``(kind, rule)``, or None."""
    kinds = _kinds_of(ruleset)
    for kind in KINDS:
        for rule in kinds.get(kind, []):
            if rule.get("enabled", True) and rule_matches(kind, rule, event, ctx):
                return kind, rule
    return None


def evaluate(ruleset: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> list[Any]:
    """The actions of the first enabled rule that matches, historical actions stripped; ``[]`` when
    nothing matches (no notification). Callers skip the user's own events first (``should_count``)."""
    found = evaluate_rule(ruleset, event, ctx)
    if found is None:
        return []
    return [copy.deepcopy(a) for a in found[1].get("actions", []) if not _is_historical(a)]


def tweaks(actions: Sequence[Any]) -> dict[str, Any]:
    """The ``tweaks`` the actions set (last one wins); ``highlight`` with no ``value`` is true."""
    result: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, Mapping) and isinstance(action.get("set_tweak"), str):
            name = action["set_tweak"]
            result[name] = action.get("value", True if name == "highlight" else None)
    return result


def notify_and_highlight(actions: Sequence[Any]) -> tuple[bool, bool]:
    """``(notify, highlight)`` for the unread counts. Highlight needs ``notify`` too: a rule that
    only sets the tweak generates no notification to highlight (Synapse counts it the same way);
    the tweak is true when given with no value or ``"value": true``."""
    notify = _NOTIFY in actions
    return notify, notify and tweaks(actions).get("highlight", False) is True


# A user ID no event can name: the stand-in recipient of ``default_rules_are_shared``.
NOBODY = "@\x00:invalid"


def default_rules_are_shared(event: Mapping[str, Any], user_id: str) -> bool:
    """Whether the server-default rule set gives ``user_id`` the same actions for ``event`` as it gives
    ``NOBODY`` in the same room (same ``PushContext`` but for the user), so one evaluation serves every
    recipient without rules of their own.

    The predefined rules depend on the recipient only through ``.m.rule.invite_for_me``
    (``state_key`` is the user) and ``.m.rule.is_user_mention`` (the user is in
    ``content.m.mentions.user_ids``); none uses the display name. A user named in neither place
    matches exactly what ``NOBODY`` matches. Keep this in step with ``_default_override``.
    """
    if event.get("state_key") == user_id:
        return False
    mentioned = _lookup(event, "content.m\\.mentions.user_ids")
    return not (isinstance(mentioned, list) and any(_same_scalar(item, user_id) for item in mentioned))


def evaluate_shared_defaults(event: Mapping[str, Any], ctx: PushContext) -> list[Any]:
    """``evaluate(default_ruleset(NOBODY), event, ctx)``, the actions every recipient without rules of
    their own gets (``default_rules_are_shared``), computed once per event on every send: same result,
    without building the rule set each time, and checking only the rules whose ``type`` conditions
    the event's type can match (``_shared_defaults_for``)."""
    event_type = event.get("type")
    rules = _shared_defaults_for(event_type) if isinstance(event_type, str) else _shared_defaults()
    for kind, rule in rules:
        if rule_matches(kind, rule, event, ctx):
            return [copy.deepcopy(a) for a in rule["actions"] if not _is_historical(a)]
    return []


@lru_cache(maxsize=1)
def _shared_defaults() -> tuple[tuple[str, Mapping[str, Any]], ...]:
    """The enabled rules of ``default_ruleset(NOBODY)`` as ``(kind, rule)`` in checking order; built
    once and never changed (``evaluate_shared_defaults`` copies the actions it returns)."""
    kinds = default_ruleset(NOBODY)["global"]
    return tuple((kind, rule) for kind in KINDS for rule in kinds[kind] if rule.get("enabled", True))


@lru_cache(maxsize=256)
def _shared_defaults_for(event_type: str) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    """``_shared_defaults`` without the rules that cannot match an event of ``event_type``: those
    with an ``event_match`` condition on ``type`` whose pattern does not match it (checked with
    ``condition_matches`` itself, so globs and case are handled as in any evaluation)."""
    probe = {"type": event_type}
    ctx = PushContext(user_id=NOBODY)

    def possible(rule: Mapping[str, Any]) -> bool:
        return all(
            condition_matches(c, probe, ctx)
            for c in rule.get("conditions", [])
            if c.get("kind") == "event_match" and c.get("key") == "type"
        )

    return tuple((kind, rule) for kind, rule in _shared_defaults() if possible(rule))


def should_count(event: Mapping[str, Any], user_id: str) -> bool:
    """False for the user's own events: "Homeservers MUST NOT notify the Push Gateway for events
    that the user has sent themselves", and "homeservers process push rules for each of the local
    users in the room (excluding the sender)"."""
    return event.get("sender") != user_id
