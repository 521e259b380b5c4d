"""The one write path for events (DESIGN.md §4.3).

``append_event`` is the only code that inserts an Event. It runs inside the caller's transaction
while the room row is locked: it checks the auth rules against the current state, builds the PDU
(hashes, event ID, DAG fields), allocates the stream position last, writes the event, the current
state, the room's denormalized columns and the membership row, and schedules the wake-ups for after
COMMIT. Room creation, the client API and the admin all come through here.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Field

from accounts.models import Device, User
from events.auth_rules import auth_event_keys, auth_types_for_event, check_event_allowed
from events.hashing import canonical_json, content_hash, room_id_for_create_event
from events.hashing import event_id as event_id_for
from events.models import CurrentState, Event
from events.notify import notify_on_commit
from events.pdu import CREATE_KEY, EventDraft, EventTypes, Membership as MembershipValues
from events.power_levels import room_creators
from events.redaction import redact_content
from events.room_versions import RoomVersion, get_room_version
from events.selectors import (
    StateKey, as_state_event, get_event, state_events_for_keys, state_events_from_rows, state_events_query,
)
from events.formatting import format_client_event
from events.stream import ALLOCATED_POSITION_SQL, allocate_statement
from matrixsrv.errors import BadJson, Forbidden, InvalidParam, MatrixError, NotFound, TooLarge
from matrixsrv.rawsql import fetch_one, run_batch
from push.actions import plan_push_actions, push_recipients_from_rows, push_recipients_query
from rooms.models import Membership, Room
from rooms.selectors import LockedRoom, lock_room, lock_room_and_read

MAX_ROOM_ID_ATTEMPTS = 20
MAX_EVENT_BYTES = 65536  # spec: events are at most 64 KiB in canonical JSON


@dataclass(frozen=True)
class SendContext:
    """Who is sending, for idempotency and unsigned.transaction_id: the device and its txn ID."""

    device: Device | None = None
    txn_id: str | None = None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _build_pdu(room: Room | None, room_id: str | None, draft: EventDraft, auth_ids: list[str],
               version: RoomVersion, ts: int) -> dict[str, Any]:
    pdu: dict[str, Any] = {
        "type": draft.type,
        "sender": draft.sender,
        "content": dict(draft.content),
        "origin_server_ts": ts,
        "depth": (room.depth if room else 0) + 1,
        "prev_events": [room.last_event_id] if room and room.last_event_id else [],
        "auth_events": auth_ids,
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    if draft.state_key is not None:
        pdu["state_key"] = draft.state_key
    if draft.redacts is not None and not version.redacts_in_content:
        pdu["redacts"] = draft.redacts
    pdu["hashes"] = {"sha256": content_hash(pdu)}
    return pdu


def _check_size(pdu: Mapping[str, Any]) -> None:
    if len(canonical_json(pdu)) > MAX_EVENT_BYTES:
        raise TooLarge("Event is larger than 64 KiB")


def append_event(
    locked: LockedRoom,
    draft: EventDraft,
    *,
    send: SendContext = SendContext(),
    redacts_own_event: bool = False,
    notify_extra: Iterable[int] = (),
    ignore_block: bool = False,
    push_recipients: list[tuple[Any, ...]] | None = None,
    state_rows: dict[StateKey, Event] | None = None,
) -> Event:
    """Check ``draft`` against the room's auth rules and append it. Raises Forbidden when rejected.

    Runs in the caller's transaction (the one that locked the room); it opens none of its own, so
    a rejected event costs no savepoint and leaves the caller's transaction usable. ``state_rows``:
    the current state for ``state_keys_for(draft)``, when the caller read it under the room's lock.
    """
    assert connection.in_atomic_block, "append_event runs inside the transaction that locked the room"
    room = locked.room
    if room.blocked and not ignore_block and not _allowed_in_blocked_room(draft):
        raise Forbidden("This room has been blocked on this server")
    version = get_room_version(room.version)
    if state_rows is None:
        state_rows = state_events_for_keys(room.room_id, state_keys_for(draft))
    state = {key: as_state_event(ev) for key, ev in state_rows.items()}
    check_event_allowed(
        draft, state, version, room_creators=room_creators(state.get(CREATE_KEY), version),
        redacts_own_event=redacts_own_event, room_id=room.room_id,
    )
    auth_keys = set(auth_event_keys(draft, version))
    auth_ids = sorted(ev.event_id for key, ev in state_rows.items() if key in auth_keys)
    pdu = _build_pdu(room, room.room_id, draft, auth_ids, version, _now_ms())
    _check_size(pdu)
    previous = state_rows.get((draft.type, draft.state_key)) if draft.state_key is not None else None
    # Push rules are evaluated before the stream position is taken (the serialized tail stays short)
    # and their notifications stored with the event, in its transaction.
    notifications = plan_push_actions(
        room=room, event=pdu, state=state, version=version, recipients=push_recipients
    )
    return _persist(room, version, pdu, draft, previous=previous, send=send, notify_extra=notify_extra,
                    then=notifications.statements)


def state_keys_for(draft: EventDraft) -> set[StateKey]:
    """The current state ``append_event`` reads for ``draft``: its auth events' keys, the create
    event, and for a state event the state it replaces (``unsigned.prev_content``)."""
    keys = set(auth_types_for_event(draft)) | {CREATE_KEY}
    if draft.state_key is not None:
        keys.add((draft.type, draft.state_key))
    return keys


def _allowed_in_blocked_room(draft: EventDraft) -> bool:
    """A blocked room (moderation) refuses every event except members going (a leave, a kick, a ban)
    and whatever the server's moderator account sends: it must be able to clean the room up."""
    if draft.type == EventTypes.MEMBER and draft.content.get("membership") in (
        MembershipValues.LEAVE, MembershipValues.BAN
    ):
        return True
    moderator = f"@{settings.MATRIX['MODERATOR_LOCALPART']}:{settings.MATRIX['SERVER_NAME']}"
    return draft.sender == moderator


def _persist(room: Room, version: RoomVersion, pdu: dict[str, Any], draft: EventDraft, *,
             previous: Event | None, send: SendContext, notify_extra: Iterable[int],
             then: Callable[[str], list[tuple[str, list[Any]]]] | None = None) -> Event:
    """Store the event at the next stream position, with current state, membership and the room's
    tip, and the statements ``then`` makes for it (the push notifications). Everything from the
    position on holds the stream lock until COMMIT, which every writer in every room waits for, so
    it is one batch (``rawsql.run_batch``: one round trip on PostgreSQL): the position, the event,
    and for a message event the room's tip and ``then``'s statements, which name the position and
    the event in SQL. A state event's current state and membership follow in one more batch."""
    event_id = event_id_for(pdu, version)
    event = Event(
        event_id=event_id,
        room=room,
        type=draft.type,
        state_key=draft.state_key,
        sender=draft.sender,
        content=pdu["content"],
        origin_server_ts=pdu["origin_server_ts"],
        depth=pdu["depth"],
        prev_events=pdu["prev_events"],
        auth_events=pdu["auth_events"],
        hashes=pdu["hashes"],
        membership=draft.content.get("membership") if draft.type == EventTypes.MEMBER else None,
        redacts=draft.redacts,
        history_visibility=room.history_visibility,
        replaces_state=previous.event_id if previous else None,
        prev_content=previous.content if previous else None,
        prev_sender=previous.sender if previous else None,
        sender_device=send.device,
        txn_id=send.txn_id,
    )
    room_fields = ["last_event_id", "depth"]
    room.last_event_id, room.depth = event_id, pdu["depth"]
    batch = [allocate_statement(), _insert_event_statement(event)]
    if draft.state_key is None:  # nothing else to write first: the room's tip and ``then`` go along
        batch += _room_tip_statements(room, room_fields, then(event_id) if then is not None else [])
    (pos,), (pk,) = (rows[0] for rows in run_batch(batch)[:2])
    event.pk, event.stream_pos, room.last_stream_pos = pk, pos, pos
    event._state.adding, event._state.db = False, connection.alias
    recipients = set(notify_extra)
    if draft.state_key is not None:
        if previous is None:
            CurrentState.objects.create(room=room, type=draft.type, state_key=draft.state_key, event=event)
        else:
            CurrentState.objects.filter(room=room, type=draft.type, state_key=draft.state_key).update(event=event)
        room_fields += apply_state_to_room(room, draft.type, draft.state_key, draft.content)
        if draft.type == EventTypes.MEMBER:
            changed, target_pk = _update_membership(room, event, previous)
            room_fields += changed
            if target_pk is not None:
                recipients.add(target_pk)
        run_batch(_room_tip_statements(room, room_fields, then(event_id) if then is not None else []))
    notify_on_commit(pos=pos, rooms=[room.room_id], users=recipients, events=1)
    return event


@cache
def _insert_event_sql() -> tuple[str, tuple[Field, ...]]:
    """INSERT of an Event at the allocated position (``ALLOCATED_POSITION_SQL``), returning its pk;
    and the fields whose values it binds, in order."""
    quote = connection.ops.quote_name
    meta = Event._meta
    fields = tuple(f for f in meta.concrete_fields if not f.primary_key)
    values = [ALLOCATED_POSITION_SQL if f.name == "stream_pos" else "%s" for f in fields]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(values)}) RETURNING {quote(meta.pk.column)}"
    )
    return sql, tuple(f for f in fields if f.name != "stream_pos")


def _insert_event_statement(event: Event) -> tuple[str, list[Any]]:
    sql, fields = _insert_event_sql()
    return sql, [f.get_db_prep_save(f.pre_save(event, True), connection) for f in fields]


def _room_tip_statements(
    room: Room, fields: list[str], then: list[tuple[str, list[Any]]]
) -> list[tuple[str, list[Any]]]:
    """The UPDATE of the room's ``fields`` and its ``last_stream_pos`` (the allocated position),
    followed by ``then``."""
    quote = connection.ops.quote_name
    columns = [Room._meta.get_field(name) for name in sorted(set(fields))]
    assignments = "".join(f"{quote(f.column)} = %s, " for f in columns)
    params: list[Any] = [f.get_db_prep_save(getattr(room, f.attname), connection) for f in columns]
    sql = (
        f"UPDATE {quote(Room._meta.db_table)} SET {assignments}"
        f"{quote(Room._meta.get_field('last_stream_pos').column)} = {ALLOCATED_POSITION_SQL} "
        f"WHERE {quote(Room._meta.pk.column)} = %s"
    )
    return [(sql, [*params, room.pk]), *then]


def apply_state_to_room(room: Room, event_type: str, state_key: str, content: Mapping[str, Any]) -> list[str]:
    """Copy the state the directory, the admin and summaries read into Room's columns."""
    if state_key != "":
        return []
    text = lambda key: content.get(key) if isinstance(content.get(key), str) else None  # noqa: E731
    if event_type == EventTypes.NAME:
        room.name = text("name") or None
        return ["name"]
    if event_type == EventTypes.TOPIC:
        room.topic = text("topic") or None
        return ["topic"]
    if event_type == EventTypes.AVATAR:
        room.avatar_url = text("url") or None
        return ["avatar_url"]
    if event_type == EventTypes.CANONICAL_ALIAS:
        room.canonical_alias = text("alias") or None
        return ["canonical_alias"]
    if event_type == EventTypes.JOIN_RULES:
        room.join_rule = text("join_rule") or "invite"
        return ["join_rule"]
    if event_type == EventTypes.HISTORY_VISIBILITY:
        room.history_visibility = text("history_visibility") or "shared"
        return ["history_visibility"]
    if event_type == EventTypes.GUEST_ACCESS:
        room.guest_access = text("guest_access") or "forbidden"
        return ["guest_access"]
    if event_type == EventTypes.ENCRYPTION:
        room.encryption = text("algorithm")
        return ["encryption"]
    if event_type == EventTypes.CREATE:
        room.room_type = text("type")
        return ["room_type"]
    return []


def _update_membership(room: Room, event: Event, previous: Event | None) -> tuple[list[str], int | None]:
    """Upsert the Membership row and the room's counts; returns the changed Room fields and the
    target's user pk (None for users of other servers)."""
    mxid = event.state_key or ""
    new = event.membership or MembershipValues.LEAVE
    old = previous.membership if previous is not None else None
    content = event.content
    user_pk = User.objects.filter(mxid=mxid).values_list("pk", flat=True).first()
    fields = {
        "user_id": user_pk,
        "membership": new,
        "event": event,
        "stream_pos": event.stream_pos,
        "displayname": content.get("displayname") if isinstance(content.get("displayname"), str) else None,
        "avatar_url": content.get("avatar_url") if isinstance(content.get("avatar_url"), str) else None,
        "forgotten": False,
    }
    updated = Membership.objects.filter(room=room, mxid=mxid).update(**fields)
    if not updated:
        Membership.objects.create(room=room, mxid=mxid, **fields)
    changed = []
    for value, delta in ((old, -1), (new, +1)):
        if value == MembershipValues.JOIN:
            room.joined_count += delta
            changed.append("joined_count")
        elif value == MembershipValues.INVITE:
            room.invited_count += delta
            changed.append("invited_count")
    return changed, user_pk


# -- room creation ------------------------------------------------------------------------------------

def _legacy_room_id() -> str:
    alphabet = string.ascii_letters
    local = "".join(secrets.choice(alphabet) for _ in range(18))
    return f"!{local}:{settings.MATRIX['SERVER_NAME']}"


def create_room_with_create_event(*, creator: User, version: RoomVersion, content: dict[str, Any]) -> LockedRoom:
    """Make the Room row and its m.room.create event. In v12 the room ID is the create event's hash.
    Runs in the caller's transaction (rooms.actions.create_room)."""
    assert connection.in_atomic_block, "rooms are created inside a transaction"
    draft = EventDraft(type=EventTypes.CREATE, sender=creator.mxid, content=content, state_key="")
    check_event_allowed(draft, {}, version, room_creators=None)
    ts = _now_ms()
    for _attempt in range(MAX_ROOM_ID_ATTEMPTS):
        if version.room_id_is_create_event_hash:
            pdu = _build_pdu(None, None, draft, [], version, ts)
            room_id = room_id_for_create_event(pdu, version)
        else:
            room_id = _legacy_room_id()
            pdu = _build_pdu(None, room_id, draft, [], version, ts)
        _check_size(pdu)
        try:
            with transaction.atomic():
                room = Room.objects.create(room_id=room_id, version=version.identifier, creator=creator.mxid)
            break
        except IntegrityError:
            # v12: the same user creating identical rooms in the same millisecond gets the same
            # create-event hash, so the same room ID. Perturb origin_server_ts and try again (as
            # Synapse does); for older versions a new random ID.
            ts += 1
    else:
        raise Forbidden("Could not allocate a room ID, try again")
    locked = lock_room(room.room_id)
    _persist(locked.room, version, pdu, draft, previous=None, send=SendContext(), notify_extra=[creator.pk])
    return locked


# -- client-facing writes ---------------------------------------------------------------------------

def _find_replay(
    send: SendContext, *, room_id: str, event_type: str, redacts: str | None = None
) -> str | None:
    """The event a retransmission of this request created, or None for a new request.

    Spec ("Transaction identifiers"): a request is a retransmission when its txnId AND its path are
    the same as a previous request's. The Event table keeps one event per (device, txn_id) (its
    unique constraint), so the same txnId on another path (another room, event type or redaction
    target) can be neither a replay nor stored: it is refused instead of answered with an
    unrelated event.
    """
    if send.device is None or send.txn_id is None:
        return None
    row = fetch_one(  # hand-written: on every send (matrixsrv/rawsql.py); the partial unique index
        f"SELECT event_id, room_id, type, redacts FROM {Event._meta.db_table} "
        "WHERE sender_device_id = %s AND txn_id = %s",
        [send.device.pk, send.txn_id],
    )
    if row is None:
        return None
    event_id, event_room_id, stored_type, stored_redacts = row
    if event_room_id != room_id or stored_type != event_type or (
        redacts is not None and stored_redacts != redacts
    ):
        raise InvalidParam(
            f"Transaction ID {send.txn_id!r} was already used by this device for another request"
        )
    return event_id


def send_message_event(*, sender: User, room_id: str, event_type: str, content: dict[str, Any],
                       send: SendContext = SendContext()) -> str:
    """Append a non-state event; idempotent per (device, txn_id): a replay returns the first event's ID.

    A new request makes no replay check: the unique index on (device, txn_id) refuses a second
    event, and only a request that fails (that index, or any refusal: the sender may have left the
    room since) looks for the event an earlier copy of it created. Two copies racing are the same
    case: the loser's transaction (its stream position too) rolls back and it answers with the
    winner's event."""
    redacts = content.get("redacts") if event_type == EventTypes.REDACTION else None
    redacts_id = redacts if isinstance(redacts, str) else None
    try:
        return _send_message_event(sender=sender, room_id=room_id, event_type=event_type, content=content,
                                   send=send)
    except (IntegrityError, MatrixError):
        existing = _find_replay(send, room_id=room_id, event_type=event_type, redacts=redacts_id)
        if existing is None:
            raise
        return existing


@transaction.atomic
def _send_message_event(*, sender: User, room_id: str, event_type: str, content: dict[str, Any],
                        send: SendContext) -> str:
    draft = EventDraft(type=event_type, sender=sender.mxid, content=content)
    if event_type == EventTypes.REDACTION:
        return _redact(lock_room(room_id), sender, draft, content.get("redacts"), send).event_id
    return _lock_and_append(room_id, draft, send=send).event_id


def _lock_and_append(room_id: str, draft: EventDraft, *, send: SendContext = SendContext()) -> Event:
    """``append_event`` after one round trip: the room's lock, then (under it) the auth state and
    whom the event may notify (not for membership events: their invitee is read by the planner)."""
    reads = [state_events_query(room_id, state_keys_for(draft))]
    if draft.type != EventTypes.MEMBER:
        reads.append(push_recipients_query(room_id=room_id, sender=draft.sender))
    locked, (state_rows, *recipient_rows) = lock_room_and_read(room_id, *reads)
    return append_event(
        locked, draft, send=send, state_rows=state_events_from_rows(state_rows),
        push_recipients=push_recipients_from_rows(recipient_rows[0]) if recipient_rows else None,
    )


@transaction.atomic
def send_state_event(*, sender: User, room_id: str, event_type: str, state_key: str,
                     content: dict[str, Any]) -> str:
    draft = EventDraft(type=event_type, sender=sender.mxid, content=content, state_key=state_key)
    return _lock_and_append(room_id, draft).event_id


@transaction.atomic
def redact_event(*, sender: User, room_id: str, target_event_id: str, reason: str | None = None,
                 send: SendContext = SendContext(), ignore_block: bool = False) -> str:
    """Send m.room.redaction for ``target_event_id`` and prune the target's content (room version rules)."""
    locked = lock_room(room_id)
    existing = _find_replay(send, room_id=locked.room.room_id, event_type=EventTypes.REDACTION,
                            redacts=target_event_id)
    if existing is not None:
        return existing
    version = get_room_version(locked.room.version)
    content: dict[str, Any] = {"reason": reason} if reason else {}
    if version.redacts_in_content:
        content["redacts"] = target_event_id
    draft = EventDraft(type=EventTypes.REDACTION, sender=sender.mxid, content=content, redacts=target_event_id)
    return _redact(locked, sender, draft, target_event_id, send, ignore_block=ignore_block).event_id


def _redact(locked: LockedRoom, sender: User, draft: EventDraft, target_event_id: Any, send: SendContext,
            *, ignore_block: bool = False) -> Event:
    if not isinstance(target_event_id, str) or not target_event_id:
        raise BadJson("A redaction must name the event it redacts (content.redacts)")
    try:
        target = get_event(target_event_id, room_id=locked.room.room_id)
    except NotFound:
        target = None
    if draft.redacts is None:
        # PUT /send/m.room.redaction: the target is content.redacts. Spec (room_send.yaml): "In
        # rooms with a version older than 11 they MUST move the redacts property inside the
        # content to the top level of the event."
        content = dict(draft.content)
        if not get_room_version(locked.room.version).redacts_in_content:
            content.pop("redacts", None)
        draft = EventDraft(type=draft.type, sender=draft.sender, content=content, redacts=target_event_id)
    if target is not None and target.type == EventTypes.CREATE:
        # Local policy, as Synapse's: the create event defines the room (its version, its
        # creators); a redaction of it would be applied by clients but never by this server.
        raise Forbidden("Redacting the m.room.create event is not permitted")
    own = target is not None and target.sender == sender.mxid
    redaction = append_event(locked, draft, send=send, redacts_own_event=own, ignore_block=ignore_block)
    if target is not None:
        prune_redacted_event(locked, target, redaction)
    return redaction


def prune_redacted_event(locked: LockedRoom, target: Event, redaction: Event) -> None:
    """Replace the target's content by its redacted form; state it replaced stays consistent."""
    version = get_room_version(locked.room.version)
    pruned = redact_content(target.type, target.content, version)
    target.content = pruned
    target.redacted_because = format_client_event(redaction)
    target.save(update_fields=["content", "redacted_because"])
    Event.objects.filter(room_id=target.room_id, replaces_state=target.event_id).update(prev_content=pruned)
    is_current = target.state_key is not None and CurrentState.objects.filter(
        room_id=target.room_id, type=target.type, state_key=target.state_key, event=target
    ).exists()
    if is_current:
        fields = apply_state_to_room(locked.room, target.type, target.state_key or "", pruned)
        if fields:
            locked.room.save(update_fields=fields)
        if target.type == EventTypes.MEMBER:
            # The member list's profile columns mirror the current member event: redacted, the
            # event keeps only "membership", so the display name and avatar go too.
            Membership.objects.filter(room_id=target.room_id, mxid=target.state_key, event=target).update(
                displayname=None, avatar_url=None
            )
