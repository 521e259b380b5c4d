"""Moderation writes: what a server admin does to rooms and users (the admin site and management
commands are the clients), and the content reports users file through the client API.

Every action is keyword-only, runs in one transaction and writes one AuditLogEntry in it, so a
refused action leaves neither events nor an audit entry behind. Room-level actions are real Matrix
events: they go through the one write path (``rooms.actions`` / ``events.actions`` → ``append_event``
and the auth rules), sent by the server's moderator account, so members' clients see them through
/sync at once. The moderator gets into a room and gets the power it needs the way a human moderator
would: it joins (public room) or is invited by a local member who may invite, and the most powerful
local member who may change the power levels raises its level. If no local member can, the action
raises Forbidden and changes nothing.

Lock order (DESIGN 4.3): every room an action touches is locked before its first event takes the
stream lock; actions spanning several rooms lock them all first, in room ID order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User, make_mxid
from e2ee import actions as e2ee_actions
from events import actions as event_actions
from events.actions import append_event
from events.models import Event
from events.pdu import CREATE_KEY, POWER_LEVELS_KEY, EventDraft, EventTypes, JoinRules
from events.pdu import Membership as M
from events.power_levels import DEFAULT_CREATOR_LEVEL, MAX_POWER_LEVEL, PowerLevels, room_creators
from events.room_versions import RoomVersion, get_room_version
from events.selectors import as_state_event, get_event, state_events_for_keys
from events.timeline import get_visible_event
from matrixsrv.errors import Forbidden, InvalidParam, NotFound
from matrixsrv.identifiers import UserID
from moderation.models import AuditLogEntry, Report
from rooms import actions as room_actions
from rooms.models import Membership, Room
from rooms.selectors import list_room_aliases, lock_room, membership_of

# The level the moderator is given when it needs power (capped by the granter's own level, never
# below what the action needs): the usual "admin" level, so one raise serves later actions too.
MODERATOR_GRANT_LEVEL = 100
REPORT_SCORE_RANGE = (-100, 0)  # the spec's former ``score`` (removed in v1.18): -100 most offensive
ACTIVE_MEMBERSHIPS = (M.JOIN, M.INVITE, M.KNOCK)


# -- the audit log --------------------------------------------------------------------------------


def _audit(*, actor: User | None, action: str, target_type: str, target: str, reason: str = "",
           details: dict[str, Any] | None = None) -> AuditLogEntry:
    return AuditLogEntry.objects.create(
        actor=actor, actor_name=actor.mxid if actor is not None else "system", action=action,
        target_type=target_type, target=target, reason=reason or "", details=details or {},
    )


# -- the moderator account ------------------------------------------------------------------------


def moderator_mxid() -> str:
    return make_mxid(settings.MATRIX["MODERATOR_LOCALPART"])


def moderator_account() -> User:
    """The server's moderator account (``MATRIX_MODERATOR_LOCALPART``), created on first use.

    It has an unusable password and no devices: nobody logs in as it, it only sends the moderation
    events. It is staff, which gives it the server-admin say over server-side settings that are not
    room events (the directory listing, aliases). An existing account with a usable password under
    that name was registered by someone: it is never adopted, or that person would moderate the server.
    """
    localpart = settings.MATRIX["MODERATOR_LOCALPART"]
    user = User.objects.filter(localpart=localpart).first()
    if user is None:
        try:
            with transaction.atomic():  # a savepoint: another worker may create it at the same moment
                user = User(localpart=localpart, mxid=make_mxid(localpart), displayname="Moderator",
                            is_staff=True)
                user.set_unusable_password()
                user.save()
        except IntegrityError:
            user = User.objects.get(localpart=localpart)
    if user.has_usable_password():
        raise Forbidden(
            f"The moderator account {user.mxid} is a registered account; configure another "
            "MATRIX_MODERATOR_LOCALPART"
        )
    if not user.is_active:
        raise Forbidden(f"The moderator account {user.mxid} is deactivated")
    return user


# -- getting the moderator into a room, with power --------------------------------------------------


@dataclass(frozen=True)
class _RoomPower:
    version: RoomVersion
    levels: PowerLevels
    creators: frozenset[str]
    content: dict[str, Any]  # the current m.room.power_levels content (synthesized if there is none)


def _room_power(room_id: str) -> _RoomPower:
    room = Room.objects.only("version").get(pk=room_id)
    version = get_room_version(room.version)
    rows = state_events_for_keys(room_id, {POWER_LEVELS_KEY, CREATE_KEY})
    state = {key: as_state_event(event) for key, event in rows.items()}
    creators = room_creators(state.get(CREATE_KEY), version)
    levels = PowerLevels.from_state(state, version, creators)
    pl = rows.get(POWER_LEVELS_KEY)
    if pl is not None:
        content = dict(pl.content)
    elif version.creators_have_infinite_power:
        content = {}
    else:  # no power levels event: the creators' implicit 100 must survive the first one we send
        content = {"users": dict.fromkeys(creators, DEFAULT_CREATOR_LEVEL)}
    return _RoomPower(version, levels, creators, content)


def _level_above(power: _RoomPower, user_id: str) -> int:
    """The level needed to act on ``user_id`` (kick, ban, change their level): strictly above theirs."""
    return power.levels.user_level(user_id) + 1


def _most_powerful_local_member(room_id: str, power: _RoomPower, *, minimum: int, exclude: str) -> User | None:
    """The joined, active local member with the highest level, if it is at least ``minimum`` (ties:
    the longest-joined). Only users named in the power levels (or creators) can be above the default,
    so a big room's member list is read only when the default level itself would do."""
    members = (
        Membership.objects.filter(room_id=room_id, membership=M.JOIN, user__isnull=False, user__is_active=True)
        .exclude(mxid=exclude).select_related("user").order_by("stream_pos")
    )
    if power.levels.users_default < minimum:
        named = set(power.levels.users) | set(power.levels.creators)
        members = members.filter(mxid__in=[u for u in named if power.levels.user_level(u) >= minimum])
    best: tuple[int, User] | None = None
    for member in members:
        level = power.levels.user_level(member.mxid)
        if level >= minimum and (best is None or level > best[0]):
            best = (level, member.user)
    return best[1] if best is not None else None


def _append(room_id: str, sender: User, event_type: str, state_key: str, content: dict[str, Any]) -> None:
    """One setup event (an unban, invite or power raise for the moderator) through the write path.

    It is part of the moderation action, so a blocked room does not refuse it (ignore_block); the
    room is locked afresh so the event builds on the room's newest row."""
    draft = EventDraft(type=event_type, sender=sender.mxid, content=content, state_key=state_key)
    append_event(lock_room(room_id), draft, ignore_block=True)


def _ensure_moderator(room_id: str, *, needed: int, what: str) -> User:
    """Make the moderator a joined member of the room with at least power level ``needed``.

    Raises Forbidden ("No local user has the power to <what>") when no local member can let it in
    or raise it; the caller's transaction then rolls everything back.
    """
    moderator = moderator_account()
    refuse = Forbidden(f"No local user has the power to {what}")
    if needed > MAX_POWER_LEVEL:
        raise refuse  # acting on a v12 room creator: nobody outranks infinite power
    power = _room_power(room_id)
    membership = membership_of(room_id, moderator.mxid)
    if membership != M.JOIN:
        if membership == M.BAN:
            unban_level = max(power.levels.ban, power.levels.kick, _level_above(power, moderator.mxid))
            unbanner = _most_powerful_local_member(room_id, power, minimum=unban_level, exclude=moderator.mxid)
            if unbanner is None:
                raise refuse
            _append(room_id, unbanner, EventTypes.MEMBER, moderator.mxid, {"membership": M.LEAVE})
            membership = M.LEAVE
        join_rule = Room.objects.values_list("join_rule", flat=True).get(pk=room_id)
        if join_rule != JoinRules.PUBLIC and membership != M.INVITE:
            inviter = _most_powerful_local_member(room_id, power, minimum=power.levels.invite,
                                                  exclude=moderator.mxid)
            if inviter is None:
                raise refuse
            _append(room_id, inviter, EventTypes.MEMBER, moderator.mxid, {"membership": M.INVITE})
        room_actions.join_room(user=moderator, room_id_or_alias=room_id)
    current = power.levels.user_level(moderator.mxid)
    if current >= needed:
        return moderator
    change_pl = power.levels.required_to_send(EventTypes.POWER_LEVELS, is_state=True)
    # The granter must be allowed to send m.room.power_levels, to give the new level (at most its
    # own) and to change the moderator's old entry (strictly above it): v10 auth rules 10.4-10.5.
    minimum = max(change_pl, needed, current + 1)
    granter = _most_powerful_local_member(room_id, power, minimum=minimum, exclude=moderator.mxid)
    if granter is None:
        raise refuse
    grant = min(max(needed, MODERATOR_GRANT_LEVEL), power.levels.user_level(granter.mxid), MAX_POWER_LEVEL)
    content = dict(power.content)
    content["users"] = {**(content.get("users") or {}), moderator.mxid: grant}
    _append(room_id, granter, EventTypes.POWER_LEVELS, "", content)
    return moderator


# -- membership -------------------------------------------------------------------------------------


def _existing_room(room_id: str) -> None:
    lock_room(room_id)  # NotFound for an unknown room; the lock comes first (DESIGN 4.3)


@transaction.atomic
def kick_member(*, actor: User | None, room_id: str, user_id: str, reason: str = "") -> None:
    """Kick ``user_id`` out of the room (an m.room.member leave sent by the moderator)."""
    UserID.parse(user_id)
    _existing_room(room_id)
    if membership_of(room_id, user_id) not in ACTIVE_MEMBERSHIPS:
        raise Forbidden(f"{user_id} is not a member of this room")
    power = _room_power(room_id)
    moderator = _ensure_moderator(room_id, needed=max(power.levels.kick, _level_above(power, user_id)),
                                  what=f"kick {user_id} from {room_id}")
    room_actions.kick_user(sender=moderator, room_id=room_id, target=user_id, reason=reason or None)
    _audit(actor=actor, action="kick_member", target_type="user", target=user_id, reason=reason,
           details={"room_id": room_id})


@transaction.atomic
def ban_member(*, actor: User | None, room_id: str, user_id: str, reason: str = "") -> None:
    """Ban ``user_id`` from the room (they need not be a member, as in the client API)."""
    UserID.parse(user_id)
    _existing_room(room_id)
    power = _room_power(room_id)
    moderator = _ensure_moderator(room_id, needed=max(power.levels.ban, _level_above(power, user_id)),
                                  what=f"ban {user_id} from {room_id}")
    room_actions.ban_user(sender=moderator, room_id=room_id, target=user_id, reason=reason or None)
    _audit(actor=actor, action="ban_member", target_type="user", target=user_id, reason=reason,
           details={"room_id": room_id})


@transaction.atomic
def unban_member(*, actor: User | None, room_id: str, user_id: str, reason: str = "") -> None:
    UserID.parse(user_id)
    _existing_room(room_id)
    if membership_of(room_id, user_id) != M.BAN:
        raise Forbidden(f"{user_id} is not banned from this room")
    power = _room_power(room_id)
    needed = max(power.levels.ban, power.levels.kick, _level_above(power, user_id))
    moderator = _ensure_moderator(room_id, needed=needed, what=f"unban {user_id} in {room_id}")
    room_actions.unban_user(sender=moderator, room_id=room_id, target=user_id, reason=reason or None)
    _audit(actor=actor, action="unban_member", target_type="user", target=user_id, reason=reason,
           details={"room_id": room_id})


# -- redaction --------------------------------------------------------------------------------------


def _redact_level(power: _RoomPower) -> int:
    return max(power.levels.redact, power.levels.required_to_send(EventTypes.REDACTION, is_state=False))


@transaction.atomic
def redact_event(*, actor: User | None, room_id: str, event_id: str, reason: str = "") -> None:
    _existing_room(room_id)
    target = get_event(event_id, room_id=room_id)
    if target.type == EventTypes.CREATE:
        raise Forbidden("Redacting the m.room.create event is not permitted")
    moderator = _ensure_moderator(room_id, needed=_redact_level(_room_power(room_id)),
                                  what=f"redact events in {room_id}")
    event_actions.redact_event(sender=moderator, room_id=room_id, target_event_id=event_id,
                               reason=reason or None)
    _audit(actor=actor, action="redact_event", target_type="event", target=event_id, reason=reason,
           details={"room_id": room_id, "sender": target.sender})


@transaction.atomic
def redact_user_events(*, actor: User | None, user_id: str, room_id: str | None = None,
                       since_ms: int | None = None, until_ms: int | None = None, reason: str = "") -> int:
    """Redact every event ``user_id`` sent in one room (or, with ``room_id`` None, in every room),
    optionally only those with ``since_ms <= origin_server_ts <= until_ms``. Already-redacted events,
    the user's own redactions and create events are skipped. Returns how many were redacted.

    In one room, a room where the moderator cannot get the redact power raises Forbidden. Server-wide,
    such a room is skipped (its work rolled back to a savepoint) and listed in the audit entry, so one
    abandoned room does not stop a spam clean-up everywhere else.
    """
    UserID.parse(user_id)
    if room_id is not None:
        _existing_room(room_id)
    events = Event.objects.filter(sender=user_id, redacted_because__isnull=True).exclude(
        type__in=[EventTypes.CREATE, EventTypes.REDACTION]
    )
    if room_id is not None:
        events = events.filter(room_id=room_id)
    if since_ms is not None:
        events = events.filter(origin_server_ts__gte=since_ms)
    if until_ms is not None:
        events = events.filter(origin_server_ts__lte=until_ms)
    by_room: dict[str, list[str]] = {}
    for rid, eid in events.order_by("room_id", "stream_pos").values_list("room_id", "event_id"):
        by_room.setdefault(rid, []).append(eid)
    for rid in sorted(by_room):
        lock_room(rid)  # every room first, in order, before the first event takes the stream lock
    count, skipped = 0, []
    for rid in sorted(by_room):
        try:
            with transaction.atomic():
                moderator = _ensure_moderator(rid, needed=_redact_level(_room_power(rid)),
                                              what=f"redact events in {rid}")
                for eid in by_room[rid]:
                    event_actions.redact_event(sender=moderator, room_id=rid, target_event_id=eid,
                                               reason=reason or None)
        except Forbidden:
            if room_id is not None:
                raise
            skipped.append(rid)
            continue
        count += len(by_room[rid])
    _audit(actor=actor, action="redact_user_events", target_type="user", target=user_id, reason=reason,
           details={"room_id": room_id, "since_ms": since_ms, "until_ms": until_ms, "count": count,
                    "skipped_rooms": skipped})
    return count


# -- room state -------------------------------------------------------------------------------------


def _send_state(*, room_id: str, event_type: str, content: dict[str, Any], what: str) -> None:
    power = _room_power(room_id)
    moderator = _ensure_moderator(room_id, needed=power.levels.required_to_send(event_type, is_state=True),
                                  what=what)
    event_actions.send_state_event(sender=moderator, room_id=room_id, event_type=event_type, state_key="",
                                   content=content)


@transaction.atomic
def set_room_name(*, actor: User | None, room_id: str, name: str, reason: str = "") -> None:
    _existing_room(room_id)
    _send_state(room_id=room_id, event_type=EventTypes.NAME, content={"name": name},
                what=f"change the name of {room_id}")
    _audit(actor=actor, action="set_room_name", target_type="room", target=room_id, reason=reason,
           details={"name": name})


@transaction.atomic
def set_room_topic(*, actor: User | None, room_id: str, topic: str, reason: str = "") -> None:
    _existing_room(room_id)
    content = {"topic": topic, "m.topic": {"m.text": [{"mimetype": "text/plain", "body": topic}]}}
    _send_state(room_id=room_id, event_type=EventTypes.TOPIC, content=content,
                what=f"change the topic of {room_id}")
    _audit(actor=actor, action="set_room_topic", target_type="room", target=room_id, reason=reason,
           details={"topic": topic})


@transaction.atomic
def set_user_power_level(*, actor: User | None, room_id: str, user_id: str, level: int, reason: str = "") -> None:
    """Set ``user_id``'s entry in the room's m.room.power_levels ``users`` to ``level``."""
    UserID.parse(user_id)
    if type(level) is not int or not -MAX_POWER_LEVEL <= level <= MAX_POWER_LEVEL:
        raise InvalidParam("The power level must be an integer")
    _existing_room(room_id)
    power = _room_power(room_id)
    if user_id in power.creators and power.version.creators_have_infinite_power:
        raise Forbidden(f"{user_id} created the room: their power is unlimited and cannot be changed")
    moderator = moderator_mxid()
    needed = max(power.levels.required_to_send(EventTypes.POWER_LEVELS, is_state=True), level)
    if user_id != moderator:
        needed = max(needed, _level_above(power, user_id))
    mod = _ensure_moderator(room_id, needed=needed, what=f"change power levels in {room_id}")
    content = dict(_room_power(room_id).content)  # after the moderator's own raise, if there was one
    previous = (content.get("users") or {}).get(user_id)
    content["users"] = {**(content.get("users") or {}), user_id: level}
    event_actions.send_state_event(sender=mod, room_id=room_id, event_type=EventTypes.POWER_LEVELS,
                                   state_key="", content=content)
    _audit(actor=actor, action="set_user_power_level", target_type="user", target=user_id, reason=reason,
           details={"room_id": room_id, "level": level, "previous": previous})


# -- the directory, blocking, shutting down ---------------------------------------------------------


@transaction.atomic
def remove_from_directory(*, actor: User | None, room_id: str, reason: str = "") -> None:
    _existing_room(room_id)
    room_actions.set_room_directory_visibility(user=moderator_account(), room_id=room_id, visibility="private")
    _audit(actor=actor, action="remove_from_directory", target_type="room", target=room_id, reason=reason)


@transaction.atomic
def block_room(*, actor: User | None, room_id: str, reason: str = "") -> None:
    """Nobody can join or send any more (events.actions.append_event refuses every event but leaves,
    kicks, bans and the moderator's own); the room stays blocked until unblock_room."""
    _existing_room(room_id)
    Room.objects.filter(pk=room_id).update(blocked=True, blocked_reason=reason or "")
    _audit(actor=actor, action="block_room", target_type="room", target=room_id, reason=reason)


@transaction.atomic
def unblock_room(*, actor: User | None, room_id: str, reason: str = "") -> None:
    _existing_room(room_id)
    Room.objects.filter(pk=room_id).update(blocked=False, blocked_reason="")
    _audit(actor=actor, action="unblock_room", target_type="room", target=room_id, reason=reason)


@transaction.atomic
def shutdown_room(*, actor: User | None, room_id: str, reason: str, notice_room_name: str | None = None,
                  notice_message: str | None = None) -> str | None:
    """Block the room, get every local member out, remove its aliases and its directory entry, and
    optionally open a notice room (made by the moderator, the removed members invited, the notice
    sent in it). Returns the notice room's ID, or None.

    Members are kicked by the moderator with ``reason``. Members it cannot outrank (a v12 room
    creator has unlimited power), or every member when no local user can give the moderator power,
    are made to leave instead: a leave is always allowed, and the room must end up empty. The
    moderator itself stays joined, so the room can still be moderated (or unblocked) later.
    """
    _existing_room(room_id)
    moderator = moderator_account()
    Room.objects.filter(pk=room_id).update(blocked=True, blocked_reason=reason or "")
    power = _room_power(room_id)
    try:
        with transaction.atomic():  # a savepoint: without power, the members leave by themselves
            _ensure_moderator(room_id, needed=power.levels.kick, what=f"kick members of {room_id}")
        moderator_joined = True
    except Forbidden:
        moderator_joined = False
    power = _room_power(room_id)
    moderator_level = power.levels.user_level(moderator.mxid)
    members = list(
        Membership.objects.filter(room_id=room_id, membership__in=ACTIVE_MEMBERSHIPS, user__isnull=False)
        .exclude(mxid=moderator.mxid).select_related("user").order_by("stream_pos")
    )
    kicked, left = [], []
    for member in members:
        if moderator_joined and moderator_level >= power.levels.kick and (
            moderator_level > power.levels.user_level(member.mxid)
        ):
            room_actions.kick_user(sender=moderator, room_id=room_id, target=member.mxid, reason=reason or None)
            kicked.append(member.mxid)
        else:
            room_actions.leave_room(user=member.user, room_id=room_id, reason=reason or None)
            left.append(member.mxid)
    aliases = list_room_aliases(room_id)
    for alias in aliases:
        # As staff the moderator may delete any alias; the canonical alias event is updated too
        # when its power allows (rooms.actions.delete_alias leaves it otherwise).
        room_actions.delete_alias(user=moderator, alias=alias)
    room_actions.set_room_directory_visibility(user=moderator, room_id=room_id, visibility="private")
    notice_room_id = None
    if notice_room_name is not None or notice_message is not None:
        removed = [m.mxid for m in members if m.user.is_active]
        notice_room_id, _ = room_actions.create_room(
            creator=moderator, preset="private_chat", name=notice_room_name or "Room shut down",
            invite=removed,
        )
        if notice_message:
            event_actions.send_message_event(
                sender=moderator, room_id=notice_room_id, event_type=EventTypes.MESSAGE,
                content={"msgtype": "m.text", "body": notice_message},
            )
    _audit(actor=actor, action="shutdown_room", target_type="room", target=room_id, reason=reason,
           details={"kicked": kicked, "left": left, "aliases_removed": aliases,
                    "notice_room_id": notice_room_id})
    return notice_room_id


# -- users ------------------------------------------------------------------------------------------


@transaction.atomic
def server_ban_user(*, actor: User | None, user_id: str, reason: str = "") -> None:
    """Ban the user from the whole server: they leave every room they are in (or invited to, or
    knocking on), then the account is deactivated (``e2ee.actions.deactivate_user``: devices, tokens
    and keys go, a device-list change). The user ID is never given out again."""
    UserID.parse(user_id)
    user = User.objects.filter(mxid=user_id).first()
    if user is None:
        raise NotFound(f"Unknown user {user_id}")
    if user.mxid == moderator_mxid():
        raise Forbidden("The moderator account cannot be banned")
    room_ids = sorted(
        Membership.objects.filter(user=user, membership__in=ACTIVE_MEMBERSHIPS).values_list("room_id", flat=True)
    )
    for room_id in room_ids:
        lock_room(room_id)  # every room first, in order (DESIGN 4.3)
    for room_id in room_ids:
        room_actions.leave_room(user=user, room_id=room_id, reason=reason or None)
    # Last: it takes a stream position for the device-list change (after the rooms' locks).
    e2ee_actions.deactivate_user(user=user)
    _audit(actor=actor, action="server_ban_user", target_type="user", target=user_id, reason=reason,
           details={"rooms_left": room_ids})


# -- reports ----------------------------------------------------------------------------------------


def _check_score(score: Any) -> None:
    low, high = REPORT_SCORE_RANGE
    if score is not None and (type(score) is not int or not low <= score <= high):
        raise InvalidParam(f"'score' must be an integer between {low} and {high}")


@transaction.atomic
def file_report(*, reporter: User, kind: str, room_id: str = "", event_id: str = "", target_user_id: str = "",
                reason: str = "", score: int | None = None) -> Report:
    """A user reports an event, a room or a user (spec "Reporting content"); the report lands in the
    admin's inbox as ``open``.

    404 ``M_NOT_FOUND``: an event the reporter cannot see (not joined to its room, not visible to
    them, or already redacted), an unknown room, a user who does not exist on this server.
    """
    if kind not in Report.KINDS:
        raise InvalidParam(f"Unknown report kind {kind!r}")
    _check_score(score)
    if kind == "event":
        not_found = NotFound("The event was not found or you are not joined to the room")
        if membership_of(room_id, reporter.mxid) != M.JOIN:
            raise not_found
        try:
            event = get_visible_event(room_id, event_id, user_mxid=reporter.mxid)
        except NotFound:
            raise not_found from None
        if event.redacted_because is not None:
            raise not_found
        target_user_id, target_type, target = event.sender, "event", event_id
    elif kind == "room":
        if not Room.objects.filter(pk=room_id).exists():
            raise NotFound("The room was not found")
        event_id, target_user_id, target_type, target = "", "", "room", room_id
    else:
        UserID.parse(target_user_id)
        if not User.objects.filter(mxid=target_user_id).exists():
            raise NotFound("The user was not found")
        room_id, event_id, target_type, target = "", "", "user", target_user_id
    report = Report.objects.create(
        reporter=reporter, kind=kind, room_id=room_id, event_id=event_id, target_user_id=target_user_id,
        reason=reason or "", score=score,
    )
    _audit(actor=reporter, action="report_filed", target_type=target_type, target=target, reason=reason,
           details={"report_id": report.pk, "kind": kind, "room_id": room_id, "score": score})
    return report


@transaction.atomic
def set_report_state(*, actor: User | None, report: Report, state: str, note: str = "") -> None:
    """Move a report through the inbox (open, in progress, resolved, dismissed), with a note."""
    if state not in Report.STATES:
        raise InvalidParam(f"Unknown report state {state!r}")
    previous = report.state
    report.state, report.handled_by, report.updated_at = state, actor, timezone.now()
    fields = ["state", "handled_by", "updated_at"]
    if note:
        report.note = note
        fields.append("note")
    report.save(update_fields=fields)
    _audit(actor=actor, action="report_state_changed", target_type="report", target=str(report.pk),
           reason=note, details={"from": previous, "to": state})
