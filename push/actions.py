"""Push writes: the user's push rules (``/pushrules/global/...``), pushers (``/pushers/set``) and the
notifications an event makes (``plan_push_actions``, called by ``events.actions.append_event``).

Every rule change reads the user's ``PushRuleState`` row under ``select_for_update`` inside one
transaction, changes it with the pure functions of ``push.rules`` and writes it back, so two
concurrent PUTs are serialized and neither update is lost. In the same transaction the merged rule
set is written as the user's global ``m.push_rules`` account data at a new stream position (spec:
servers send push rule changes to clients that way), and the position is returned: the caller
wakes the user's /sync waiters with it (``events.notify`` is in a later app of the same layer, so
push cannot import it; the views call it, see push/views.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any
from urllib.parse import urlsplit

from django.db import connection, transaction
from django.db.models import FilteredRelation, Q
from django.utils import timezone

from accounts.account_data_selectors import IGNORED_USER_LIST, PUSH_RULES, ignored_users_in
from accounts.models import AccountData, Device, User
from events.models import Event
from events.pdu import AuthState, EventTypes, Membership as MembershipValues, member_key
from events.power_levels import PowerLevels
from events.room_versions import RoomVersion
from events.stream import ALLOCATED_POSITION_SQL, next_stream_position
from matrixsrv.errors import InvalidParam, MissingParam
from matrixsrv.rawsql import fetch_all, json_value
from push.models import PushAction, Pusher, PushRuleState
from push.rules import (
    NOBODY,
    PushContext,
    check_kind,
    default_rules_are_shared,
    evaluate,
    evaluate_shared_defaults,
    find_rule,
    insert_rule,
    merge_ruleset,
    notify_and_highlight,
    rule_key,
    validate_actions,
    validate_rule,
)
from rooms.models import Membership, Room

PUSH_GATEWAY_PATH = "/_matrix/push/v1/notify"
EMAIL_APP_ID = "m.email"
MAX_APP_ID_CHARS = 64
MAX_PUSHKEY_BYTES = 512


# -- push rules ---------------------------------------------------------------------------------------


def _lock_state(user: User) -> PushRuleState:
    """The user's rule-state row, created if missing, locked until the transaction ends."""
    PushRuleState.objects.get_or_create(user=user)
    return PushRuleState.objects.select_for_update().get(user=user)


def _save(state: PushRuleState, user: User) -> int:
    """Store the changed rule state and publish the merged rule set as the user's ``m.push_rules``
    account data at a new stream position (taken last: the row lock above is held already, so the
    lock order is rule state, then stream). Returns the position, for the caller's wake-up."""
    state.updated_at = timezone.now()
    state.save(update_fields=["overrides", "custom", "updated_at"])
    content = merge_ruleset(user.mxid, state.overrides, state.custom)
    pos = next_stream_position()
    updated = AccountData.objects.filter(user=user, room_id=None, type=PUSH_RULES).update(
        content=content, stream_pos=pos
    )
    if not updated:
        AccountData.objects.create(user=user, room_id=None, type=PUSH_RULES, content=content, stream_pos=pos)
    return pos


def _existing_rule(state: PushRuleState, user: User, kind: str, rule_id: str) -> dict[str, Any]:
    """The rule as the user sees it now, or 404 M_NOT_FOUND."""
    return find_rule(merge_ruleset(user.mxid, state.overrides, state.custom), kind, rule_id)


def put_rule(
    *, user: User, kind: str, rule_id: str, body: Any, before: str | None = None, after: str | None = None
) -> int:
    """``PUT /pushrules/global/{kind}/{ruleId}``: create or replace one of the user's rules; returns
    the stream position of the new ``m.push_rules`` account data.

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
        return _save(state, user)


def delete_rule(*, user: User, kind: str, rule_id: str) -> int:
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
        return _save(state, user)


def _change_rule(user: User, kind: str, rule_id: str, field: str, value: Any) -> int:
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
        return _save(state, user)


def set_rule_enabled(*, user: User, kind: str, rule_id: str, enabled: bool) -> int:
    """``PUT /pushrules/global/{kind}/{ruleId}/enabled``"""
    return _change_rule(user, kind, rule_id, "enabled", bool(enabled))


def set_rule_actions(*, user: User, kind: str, rule_id: str, actions: Any) -> int:
    """``PUT /pushrules/global/{kind}/{ruleId}/actions``: actions validated (historical ones dropped)."""
    return _change_rule(user, kind, rule_id, "actions", validate_actions(actions))


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


# -- notifications made by an event -------------------------------------------------------------------

MAIN_THREAD = "main"
THREAD_REL = "m.thread"
# push.md / receipts.md, "Threaded read receipts": follow relations at most this many hops to find
# the thread an event belongs to.
MAX_THREAD_HOPS = 3


@dataclass
class PendingPushActions:
    """What ``plan_push_actions`` found for one event, before the event has its stream position:
    ``(user_pk, actions, highlight)`` per recipient to notify. ``statements`` writes them with the
    event."""

    room_id: str
    event: Mapping[str, Any]
    notified: list[tuple[int, list[Any], bool]] = field(default_factory=list)
    thread_id: str = MAIN_THREAD  # the event's thread (looked up before the stream position is taken)

    def statements(self, event_id: str) -> list[tuple[str, list[Any]]]:
        """The INSERT of the rows (one per ``INSERT_BATCH_ROWS``; none when nobody is notified), for
        the event's transaction, after the event ``event_id`` is inserted at the allocated position:
        both are named in SQL (``_insert_sql``), so ``events.actions`` sends these in the same round
        trip as the event itself, while the stream position's lock is held.

        Hand-written: on every send to a room with others in it, where ``bulk_create``'s per-object
        work cost four times the statement (measured: 0.45 ms for 9 rows on SQLite). The values all
        rows share are bound once (``_insert_sql``), and equal action lists are encoded once."""
        if not self.notified:
            return []
        ts = int(time.time() * 1000)
        if connection.vendor == "postgresql":
            return [self._unnest_statement(event_id, ts)]
        prep_actions = PushAction._meta.get_field("actions").get_db_prep_save
        prepared: dict[int, Any] = {}  # id(actions) -> its bound value: recipients share one list
        out: list[tuple[str, list[Any]]] = []
        for start in range(0, len(self.notified), INSERT_BATCH_ROWS):
            batch = self.notified[start : start + INSERT_BATCH_ROWS]
            params: list[Any] = [self.room_id, event_id, self.thread_id, True, ts]
            for user_pk, actions, highlight in batch:
                value = prepared.get(id(actions))
                if value is None:
                    value = prepared[id(actions)] = prep_actions(actions, connection)
                params += [user_pk, highlight, value]
            out.append((_insert_sql(len(batch)), params))
        return out


    def _unnest_statement(self, event_id: str, ts: int) -> tuple[str, list[Any]]:
        """PostgreSQL: every row in one statement of nine parameters whatever the room's size, the
        rows' values as arrays (``_unnest_insert_sql``) and the distinct action lists encoded once,
        as one JSON array the rows index into. Per row, a parameter each for the user, the highlight
        and the actions made psycopg parse the statement anew and encode the same JSON for every
        recipient: half of a send's CPU in a room of 100."""
        index: dict[int, int] = {}  # id(actions) -> its place in ``encoded``: recipients share one list
        encoded: list[str] = []
        users, highlights, which = [], [], []
        for user_pk, actions, highlight in self.notified:
            i = index.get(id(actions))
            if i is None:
                i = index[id(actions)] = len(encoded)
                encoded.append(json.dumps(actions))
            users.append(user_pk)
            highlights.append(highlight)
            which.append(i)
        params = ["[" + ",".join(encoded) + "]", self.room_id, event_id, self.thread_id, True, ts,
                  users, highlights, which]
        return _unnest_insert_sql(), params


def load_push_recipients(*, room_id: str, sender: str, invitee: str | None = None) -> list[tuple[Any, ...]]:
    """The room's local members (and a local invitee) whom an event of ``sender`` may notify, with
    what evaluating their rules needs: one hand-written query (``push_recipients_query``)."""
    return push_recipients_from_rows(fetch_all(*push_recipients_query(room_id=room_id, sender=sender, invitee=invitee)))


def push_recipients_query(*, room_id: str, sender: str, invitee: str | None = None) -> tuple[str, list[Any]]:
    """The read of ``load_push_recipients``, for running with others: ``send_message_event`` runs it
    in the round trip that locks the room (``rooms.selectors.lock_room_and_read``)."""
    return _recipients_sql(), [IGNORED_USER_LIST, room_id, sender, MembershipValues.JOIN, invitee or ""]


def push_recipients_from_rows(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [
        (user_pk, mxid, membership, displayname, json_value(overrides), json_value(custom),
         json_value(ignored))
        for user_pk, mxid, membership, displayname, overrides, custom, ignored in rows
    ]


def plan_push_actions(
    *,
    room: Room,
    event: Mapping[str, Any],
    state: AuthState,
    version: RoomVersion,
    recipients: list[tuple[Any, ...]] | None = None,
) -> PendingPushActions:
    """Evaluate the push rules of the room's joined local members (and of a local invitee) against
    ``event`` (its PDU: the client-format keys the conditions read). Called by ``append_event`` while
    the room is locked, *before* the stream position is taken, so the globally serialized tail stays
    short; ``record`` then stores the result.

    * The sender is never notified of their own event, nor is anyone who ignores the sender (their
      events are not shown to them, so they must not count as unread either).
    * One query: the members with their display names (``Membership``), their stored rule state
      (absent: the server defaults) and their ignored-users list. A room where the sender is the
      only member (room creation) costs none.
    * ``sender_notification_permission`` uses the power levels in ``state`` (the auth state the event
      was checked against, which always holds them), ``room_member_count`` the room's joined count.
    """
    pending = PendingPushActions(room_id=room.room_id, event=event)
    sender = event.get("sender")
    invitee = _local_invitee(event)
    sender_member = state.get(member_key(sender)) if isinstance(sender, str) else None
    sender_joined = (
        sender_member is not None and sender_member.content.get("membership") == MembershipValues.JOIN
    )
    if room.joined_count - (1 if sender_joined else 0) <= 0 and invitee is None:
        return pending
    rows = (
        list(recipients)
        if recipients is not None
        else load_push_recipients(room_id=room.room_id, sender=str(sender), invitee=invitee)
    )
    if invitee is not None and invitee != sender and all(row[1] != invitee for row in rows):
        rows += _invitee_row(invitee)  # first invite: no member row yet (one more query, invites only)
    power = PowerLevels.from_state(state, version)
    sender_level = power.user_level(sender) if isinstance(sender, str) else None

    def context(user_id: str, display_name: str | None) -> PushContext:
        return PushContext(
            user_id=user_id,
            user_display_name=display_name,
            room_member_count=room.joined_count,
            sender_power_level=sender_level,
            notification_power_levels=power.notifications,
        )

    # Most members have the server defaults, which give everyone not named by the event the same
    # actions: evaluated once, for NOBODY (push.rules.default_rules_are_shared), and so are their
    # notify/highlight flags; the recipients share that one actions list.
    shared: tuple[list[Any], bool, bool] | None = None
    for user_pk, mxid, membership, displayname, overrides, custom, ignored in rows:
        if membership != MembershipValues.JOIN and mxid != invitee:
            continue
        if ignored is not None and sender in ignored_users_in(ignored, own_mxid=mxid):
            continue
        if not overrides and not custom and default_rules_are_shared(event, mxid):
            if shared is None:
                shared_actions = evaluate_shared_defaults(event, context(NOBODY, None))
                shared = (shared_actions, *notify_and_highlight(shared_actions))
            actions, notify, highlight = shared
        else:
            ruleset = merge_ruleset(mxid, overrides or {}, custom or [])
            name = displayname if membership == MembershipValues.JOIN else None
            actions = evaluate(ruleset, event, context(mxid, name))
            notify, highlight = notify_and_highlight(actions)
        if notify:
            pending.notified.append((user_pk, actions, highlight))
    if pending.notified:
        pending.thread_id = _thread_of(room.room_id, event)
    return pending


def _local_invitee(event: Mapping[str, Any]) -> str | None:
    """The target of an invite (``.m.rule.invite_for_me`` notifies them although not joined); a
    remote one simply has no user row, so the query finds nothing for them."""
    content = event.get("content")
    if (
        event.get("type") == EventTypes.MEMBER
        and isinstance(content, Mapping)
        and content.get("membership") == MembershipValues.INVITE
        and isinstance(event.get("state_key"), str)
    ):
        return str(event["state_key"])
    return None


# Rows per INSERT: 3 parameters each (plus 6 shared) stays under SQLite's oldest limit of 999 bound
# parameters.
INSERT_BATCH_ROWS = 100
_SHARED_COLUMNS = ("room", "event", "stream_pos", "thread_id", "notify", "ts")
_ROW_COLUMNS = ("user", "highlight", "actions")


@lru_cache(maxsize=INSERT_BATCH_ROWS)
def _insert_sql(rows: int) -> str:
    """``INSERT`` of ``rows`` push actions, built once per row count: the values every row shares
    are bound once (``_SHARED_COLUMNS``: the event by its ID, the position as the one this
    transaction allocated), each row binds ``_ROW_COLUMNS`` in a ``VALUES`` list (whose columns are
    named ``column1``... on both SQLite and PostgreSQL). Few parameters matter on PostgreSQL:
    psycopg re-parses every statement with more than 50 instead of caching it (measured: 0.25 ms of
    CPU per send for the 81 of 9 rows x 9 columns)."""
    quote = connection.ops.quote_name
    meta = PushAction._meta
    columns = ", ".join(quote(meta.get_field(name).column) for name in _ROW_COLUMNS + _SHARED_COLUMNS)
    shared = {
        "event": f"(SELECT id FROM {quote(Event._meta.db_table)} WHERE event_id = %s)",
        "stream_pos": ALLOCATED_POSITION_SQL,
    }
    selected = ", ".join(
        [f"v.column{i + 1}" for i in range(len(_ROW_COLUMNS))] + [shared.get(name, "%s") for name in _SHARED_COLUMNS]
    )
    one = "(" + ", ".join(["%s"] * len(_ROW_COLUMNS)) + ")"
    return (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT {selected} "
        f"FROM (VALUES {', '.join([one] * rows)}) v"
    )


@cache
def _unnest_insert_sql() -> str:
    """``_insert_sql`` for PostgreSQL, for any number of rows: ``_ROW_COLUMNS`` come from arrays (the
    actions as an index into one JSON array of the distinct lists), the shared values are bound once.
    Params: the actions' JSON array, then ``_SHARED_COLUMNS`` but the position, then the users, the
    highlights and the indexes."""
    quote = connection.ops.quote_name
    meta = PushAction._meta
    columns = ", ".join(quote(meta.get_field(name).column) for name in _ROW_COLUMNS + _SHARED_COLUMNS)
    event = f"(SELECT id FROM {quote(Event._meta.db_table)} WHERE event_id = %s)"
    return (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "
        f"SELECT r.u, r.h, (%s::jsonb) -> r.i, %s, {event}, {ALLOCATED_POSITION_SQL}, %s, %s, %s "
        f"FROM unnest(%s::bigint[], %s::boolean[], %s::int[]) AS r(u, h, i)"
    )


@cache
def _recipients_sql() -> str:
    """The room's local members who may be notified, with their display name, stored rule state and
    ignored-users list (NULL when absent). Hand-written, built once: it runs on every send, where the
    ORM's compilation of the two outer joins would cost more than the query (matrixsrv/rawsql.py)."""
    quote = connection.ops.quote_name
    m, s, a = (quote(model._meta.db_table) for model in (Membership, PushRuleState, AccountData))
    return (
        f"SELECT m.user_id, m.mxid, m.membership, m.displayname, s.overrides, s.custom, a.content "
        f"FROM {m} m LEFT JOIN {s} s ON s.user_id = m.user_id "
        f"LEFT JOIN {a} a ON a.user_id = m.user_id AND a.room_id IS NULL AND a.type = %s "
        f"WHERE m.room_id = %s AND m.user_id IS NOT NULL AND m.mxid <> %s "
        f"AND (m.membership = %s OR m.mxid = %s)"
    )



def _invitee_row(mxid: str) -> list[tuple[Any, ...]]:
    """The invitee in the shape of the member rows (not in the room: no display name)."""
    ignored_list = FilteredRelation(
        "account_data", condition=Q(account_data__room_id__isnull=True, account_data__type=IGNORED_USER_LIST)
    )
    return [
        (pk, mxid, MembershipValues.INVITE, None, overrides, custom, ignored)
        for pk, overrides, custom, ignored in User.objects.filter(mxid=mxid)
        .annotate(ignored_list=ignored_list)
        .values_list("pk", "push_rule_state__overrides", "push_rule_state__custom", "ignored_list__content")
    ]


def _relation(content: object) -> tuple[str, str] | None:
    relates = content.get("m.relates_to") if isinstance(content, Mapping) else None
    if not isinstance(relates, Mapping):
        return None
    rel_type, parent = relates.get("rel_type"), relates.get("event_id")
    if isinstance(rel_type, str) and isinstance(parent, str):
        return rel_type, parent
    return None


def _thread_of(room_id: str, event: Mapping[str, Any]) -> str:
    """The thread the event belongs to: the root of its ``m.thread`` relation, or, for another
    relation (a reaction, an edit, a reference), the thread of the event it relates to, followed
    for at most ``MAX_THREAD_HOPS`` hops (one small query per hop, only for notifying relations).
    Anything else, thread roots included, is in the main timeline."""
    content: object = event.get("content")
    for _hop in range(MAX_THREAD_HOPS):
        relation = _relation(content)
        if relation is None:
            return MAIN_THREAD
        rel_type, parent = relation
        if rel_type == THREAD_REL:
            return parent
        content = (
            Event.objects.filter(room_id=room_id, event_id=parent).values_list("content", flat=True).first()
        )
    return MAIN_THREAD
