"""Push writes: the user's push rules (``/pushrules/global/...``) and pushers (``/pushers/set``).

Every rule change reads the user's ``PushRuleState`` row under ``select_for_update`` inside one
transaction, changes it with the pure functions of ``push.rules`` and writes it back, so two
concurrent PUTs are serialized and neither update is lost.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from accounts.models import Device, User
from matrixsrv.errors import InvalidParam, MissingParam
from push.models import Pusher, PushRuleState
from push.rules import (
    check_kind,
    find_rule,
    insert_rule,
    merge_ruleset,
    rule_key,
    validate_actions,
    validate_rule,
)

PUSH_GATEWAY_PATH = "/_matrix/push/v1/notify"
EMAIL_APP_ID = "m.email"
MAX_APP_ID_CHARS = 64
MAX_PUSHKEY_BYTES = 512


# -- push rules ---------------------------------------------------------------------------------------


def _lock_state(user: User) -> PushRuleState:
    """The user's rule-state row, created if missing, locked until the transaction ends."""
    PushRuleState.objects.get_or_create(user=user)
    return PushRuleState.objects.select_for_update().get(user=user)


def _save(state: PushRuleState) -> None:
    state.updated_at = timezone.now()
    state.save(update_fields=["overrides", "custom", "updated_at"])


def _existing_rule(state: PushRuleState, user: User, kind: str, rule_id: str) -> dict[str, Any]:
    """The rule as the user sees it now, or 404 M_NOT_FOUND."""
    return find_rule(merge_ruleset(user.mxid, state.overrides, state.custom), kind, rule_id)


def put_rule(
    *, user: User, kind: str, rule_id: str, body: Any, before: str | None = None, after: str | None = None
) -> None:
    """``PUT /pushrules/global/{kind}/{ruleId}``: create or replace one of the user's rules.

    Server-default (``.``-prefixed) IDs are rejected by ``validate_rule`` (400 M_INVALID_PARAM);
    a missing or server-default ``before``/``after`` anchor is 400 M_UNKNOWN (``insert_rule``).
    """
    rule = validate_rule(kind, rule_id, body)
    rule["kind"] = kind
    with transaction.atomic():
        state = _lock_state(user)
        of_kind = [r for r in state.custom if r.get("kind") == kind]
        others = [r for r in state.custom if r.get("kind") != kind]
        state.custom = others + insert_rule(of_kind, rule, before=before, after=after)
        _save(state)


def delete_rule(*, user: User, kind: str, rule_id: str) -> None:
    """``DELETE /pushrules/global/{kind}/{ruleId}``: 404 for an unknown rule, 400 M_INVALID_PARAM
    for a server-default one (those can only be disabled or given other actions)."""
    check_kind(kind)
    with transaction.atomic():
        state = _lock_state(user)
        rule = _existing_rule(state, user, kind, rule_id)
        if rule["default"]:
            raise InvalidParam("Server-default push rules cannot be deleted")
        state.custom = [
            r for r in state.custom if not (r.get("kind") == kind and r.get("rule_id") == rule_id)
        ]
        _save(state)


def _change_rule(user: User, kind: str, rule_id: str, field: str, value: Any) -> None:
    """Set ``enabled`` or ``actions`` of an existing rule: an override for a server-default rule,
    the stored rule itself for the user's own."""
    check_kind(kind)
    with transaction.atomic():
        state = _lock_state(user)
        rule = _existing_rule(state, user, kind, rule_id)
        if rule["default"]:
            key = rule_key(kind, rule_id)
            state.overrides = {**state.overrides, key: {**state.overrides.get(key, {}), field: value}}
        else:
            state.custom = [
                {**r, field: value} if r.get("kind") == kind and r.get("rule_id") == rule_id else r
                for r in state.custom
            ]
        _save(state)


def set_rule_enabled(*, user: User, kind: str, rule_id: str, enabled: bool) -> None:
    """``PUT /pushrules/global/{kind}/{ruleId}/enabled``"""
    _change_rule(user, kind, rule_id, "enabled", bool(enabled))


def set_rule_actions(*, user: User, kind: str, rule_id: str, actions: Any) -> None:
    """``PUT /pushrules/global/{kind}/{ruleId}/actions``: actions validated (historical ones dropped)."""
    _change_rule(user, kind, rule_id, "actions", validate_actions(actions))


# -- pushers ------------------------------------------------------------------------------------------


def _check_pusher(
    *,
    app_id: str,
    pushkey: str,
    kind: str,
    app_display_name: str | None,
    device_display_name: str | None,
    lang: str | None,
    data: Any,
) -> None:
    if len(app_id) > MAX_APP_ID_CHARS:
        raise InvalidParam(f"'app_id' is longer than {MAX_APP_ID_CHARS} characters")
    if len(pushkey.encode()) > MAX_PUSHKEY_BYTES:
        raise InvalidParam(f"'pushkey' is longer than {MAX_PUSHKEY_BYTES} bytes")
    if kind not in Pusher.Kind.values:
        raise InvalidParam(f"Unsupported pusher kind: {kind!r}")
    missing = [
        name
        for name, value in (
            ("app_display_name", app_display_name),
            ("device_display_name", device_display_name),
            ("lang", lang),
            ("data", data),
        )
        if value is None
    ]
    if missing:
        raise MissingParam(f"Missing parameters: {', '.join(missing)}")
    if not isinstance(data, dict):
        raise InvalidParam("'data' must be an object")
    if kind == Pusher.Kind.HTTP:
        url = data.get("url")
        if not isinstance(url, str):
            raise InvalidParam("'url' is required in 'data' for http pushers")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path != PUSH_GATEWAY_PATH:
            raise InvalidParam(f"'data.url' must be an HTTP(S) URL with the path {PUSH_GATEWAY_PATH}")
    elif kind == Pusher.Kind.EMAIL and app_id != EMAIL_APP_ID:
        raise InvalidParam(f"Email pushers need the app_id {EMAIL_APP_ID!r}")


def set_pusher(
    *,
    user: User,
    device: Device | None,
    app_id: str,
    pushkey: str,
    kind: str | None,
    app_display_name: str | None = None,
    device_display_name: str | None = None,
    profile_tag: str | None = None,
    lang: str | None = None,
    data: Any = None,
    append: bool = False,
) -> None:
    """``POST /pushers/set``.

    * ``kind`` None: delete the user's pusher with this app_id and pushkey (nothing to do if none).
    * otherwise create or update it (``kind`` http or email; http needs ``data.url``). Unless
      ``append``, pushers of *other* users with the same app_id and pushkey are removed: "the
      homeserver must remove any other pushers with the same App ID and pushkey for different users".
    """
    if kind is None:
        Pusher.objects.filter(user=user, app_id=app_id, pushkey=pushkey).delete()
        return
    _check_pusher(
        app_id=app_id,
        pushkey=pushkey,
        kind=kind,
        app_display_name=app_display_name,
        device_display_name=device_display_name,
        lang=lang,
        data=data,
    )
    with transaction.atomic():
        Pusher.objects.update_or_create(
            user=user,
            app_id=app_id,
            pushkey=pushkey,
            defaults={
                "device": device,
                "kind": kind,
                "app_display_name": app_display_name,
                "device_display_name": device_display_name,
                "profile_tag": profile_tag,
                "lang": lang,
                "data": data,
            },
        )
        if not append:
            Pusher.objects.filter(app_id=app_id, pushkey=pushkey).exclude(user=user).delete()
