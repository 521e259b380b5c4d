"""Room writes: creating rooms, membership changes, aliases and the directory.

Membership changes are events: each goes through events.actions.append_event and the room's auth
rules. Checks here are only those outside the auth rules (alias namespace, directory permission,
"already joined" being a no-op).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from accounts.models import User
from events.actions import append_event, create_room_with_create_event, send_state_event
from events.pdu import ADDITIONAL_CREATORS, CREATE_KEY, EventDraft, EventTypes, JoinRules, Membership as M
from events.power_levels import PowerLevels, default_power_levels_content, room_creators
from events.room_versions import DEFAULT_ROOM_VERSION, RoomVersion, get_room_version
from events.selectors import as_state_event, state_events_for_keys
from matrixsrv.errors import (
    BadJson,
    Forbidden,
    InvalidParam,
    MatrixError,
    NotFound,
    RoomInUse,
    Unknown,
)
from matrixsrv.identifiers import RoomAlias as RoomAliasID
from matrixsrv.identifiers import UserID
from rooms.models import Membership, RoomAlias
from rooms.selectors import LockedRoom, find_membership, joined_room_ids, lock_room, resolve_room_id_or_alias

class InvalidRoomState(MatrixError):
    """createRoom: "The initial state implied by the parameters to the request is invalid" (400)."""

    errcode, default_message = "M_INVALID_ROOM_STATE", "Invalid initial room state"


PRESETS: dict[str, dict[str, str]] = {
    "private_chat": {"join_rule": "invite", "history_visibility": "shared", "guest_access": "can_join"},
    "trusted_private_chat": {"join_rule": "invite", "history_visibility": "shared", "guest_access": "can_join"},
    "public_chat": {"join_rule": "public", "history_visibility": "shared", "guest_access": "forbidden"},
}


def _server_name() -> str:
    return settings.MATRIX["SERVER_NAME"]


def _member_content(user: User | None, membership: str, *, reason: str | None = None,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"membership": membership}
    if user is not None and membership in (M.JOIN, M.INVITE, M.KNOCK):
        if user.displayname:
            content["displayname"] = user.displayname
        if user.avatar_url:
            content["avatar_url"] = user.avatar_url
    if reason:
        content["reason"] = reason
    if extra:
        content.update(extra)
    return content


def _local_user(mxid: str) -> User:
    parsed = UserID.parse(mxid)
    if parsed.server_name != _server_name():
        raise Forbidden("This server does not federate: only local users can be invited")
    user = User.objects.filter(mxid=mxid).first()
    if user is None:
        raise NotFound(f"Unknown user {mxid}")
    return user


def _member(locked: LockedRoom, sender: User, target: str, content: dict[str, Any]) -> str:
    draft = EventDraft(type=EventTypes.MEMBER, sender=sender.mxid, content=content, state_key=target)
    return append_event(locked, draft).event_id


# -- createRoom ---------------------------------------------------------------------------------------

def validate_alias_localpart(localpart: str) -> str:
    if not localpart or ":" in localpart or any(c.isspace() for c in localpart) or "#" in localpart:
        raise InvalidParam("Invalid characters in room alias")
    alias = f"#{localpart}:{_server_name()}"
    RoomAliasID.parse(alias)
    return alias


@transaction.atomic
def create_room(
    *,
    creator: User,
    room_version: str | None = None,
    visibility: str = "private",
    preset: str | None = None,
    room_alias_name: str | None = None,
    name: str | None = None,
    topic: str | None = None,
    invite: list[str] | None = None,
    is_direct: bool = False,
    initial_state: list[dict[str, Any]] | None = None,
    creation_content: dict[str, Any] | None = None,
    power_level_content_override: dict[str, Any] | None = None,
) -> tuple[str, str | None]:
    """POST /createRoom: the initial events in the spec's order. Returns (room_id, room_alias)."""
    # An empty string is a version we don't support, not "use the default".
    version = get_room_version(DEFAULT_ROOM_VERSION if room_version is None else room_version)
    if visibility not in ("public", "private"):
        raise InvalidParam("visibility must be 'public' or 'private'")
    preset = preset or ("public_chat" if visibility == "public" else "private_chat")
    if preset not in PRESETS:
        raise InvalidParam(f"Unknown preset {preset!r}")
    alias = validate_alias_localpart(room_alias_name) if room_alias_name is not None else None
    if alias is not None and RoomAlias.objects.filter(alias=alias).exists():
        raise RoomInUse("Room alias already taken")
    invitees = [_local_user(mxid) for mxid in dict.fromkeys(invite or [])]
    invitees = [u for u in invitees if u.pk != creator.pk]
    initial = [_initial_state_entry(e) for e in initial_state or []]
    try:
        room_id = _create_room_events(
            creator=creator, version=version, preset=preset, alias=alias, name=name, topic=topic,
            invitees=invitees, is_direct=is_direct, initial=initial, creation_content=creation_content,
            power_level_content_override=power_level_content_override, publish=visibility == "public",
        )
    except Forbidden as exc:
        # The auth rules refused one of the events the request implies (e.g. an override that
        # takes the creator's power away before the name is set): the spec's M_INVALID_ROOM_STATE.
        raise InvalidRoomState(f"The initial state is invalid: {exc.message}") from None
    return room_id, alias


def _create_room_events(
    *,
    creator: User,
    version: RoomVersion,
    preset: str,
    alias: str | None,
    name: str | None,
    topic: str | None,
    invitees: list[User],
    is_direct: bool,
    initial: list[tuple[str, str, dict[str, Any]]],
    creation_content: dict[str, Any] | None,
    power_level_content_override: dict[str, Any] | None,
    publish: bool,
) -> str:
    """Append createRoom's events in the spec's order (create_room_yaml, steps 1-8)."""
    # 1. m.room.create
    content = dict(creation_content or {})
    # Spec: "The server will overwrite the following keys: creator, room_version". From v11 the
    # creator is the create event's sender, so a client-supplied "creator" is dropped, not kept.
    content["room_version"] = version.identifier
    content.pop("creator", None)
    if not version.implicit_room_creator:
        content["creator"] = creator.mxid
    if version.creators_have_infinite_power and preset == "trusted_private_chat" and invitees:
        # Spec: combine creation_content's additional_creators with the invitees, deduplicated.
        # Anything but a list is left for the auth rules to reject (v12 rule 1.4).
        extra = content.get(ADDITIONAL_CREATORS, [])
        if isinstance(extra, list):
            content[ADDITIONAL_CREATORS] = list(dict.fromkeys([*extra, *(u.mxid for u in invitees)]))
    locked = create_room_with_create_event(creator=creator, version=version, content=content)

    def state(event_type: str, content: dict[str, Any], state_key: str = "") -> None:
        append_event(locked, EventDraft(type=event_type, sender=creator.mxid, content=content, state_key=state_key))

    # 2. the creator joins
    state(EventTypes.MEMBER, _member_content(creator, M.JOIN), creator.mxid)
    # 3. power levels (+ override)
    pl = default_power_levels_content(
        creator.mxid, preset=preset, invitees=[u.mxid for u in invitees], version=version
    )
    pl.update(power_level_content_override or {})
    state(EventTypes.POWER_LEVELS, pl)
    # 4. canonical alias
    if alias is not None:
        try:
            with transaction.atomic():
                RoomAlias.objects.create(alias=alias, room=locked.room, creator=creator.mxid)
        except IntegrityError:
            raise RoomInUse("Room alias already taken") from None
        state(EventTypes.CANONICAL_ALIAS, {"alias": alias})
    # 5. preset events, unless initial_state sets the same state
    overridden = {(t, k) for t, k, _ in initial}
    p = PRESETS[preset]
    for event_type, key, value in (
        (EventTypes.JOIN_RULES, "join_rule", p["join_rule"]),
        (EventTypes.HISTORY_VISIBILITY, "history_visibility", p["history_visibility"]),
        (EventTypes.GUEST_ACCESS, "guest_access", p["guest_access"]),
    ):
        if (event_type, "") not in overridden:
            state(event_type, {key: value})
    # 6. initial_state, in order
    for event_type, state_key, event_content in initial:
        state(event_type, event_content, state_key)
    # 7. name and topic
    if name is not None:
        state(EventTypes.NAME, {"name": name})
    if topic is not None:
        state(EventTypes.TOPIC, {"topic": topic, "m.topic": {"m.text": [{"mimetype": "text/plain", "body": topic}]}})
    # 8. invites
    for invitee in invitees:
        extra = {"is_direct": True} if is_direct else None
        state(EventTypes.MEMBER, _member_content(invitee, M.INVITE, extra=extra), invitee.mxid)
    if publish:
        locked.room.is_public = True
        locked.room.save(update_fields=["is_public"])
    return locked.room.room_id


def _initial_state_entry(entry: Any) -> tuple[str, str, dict[str, Any]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise BadJson("initial_state entries need a 'type'")
    state_key = entry.get("state_key", "")
    content = entry.get("content", {})
    if not isinstance(state_key, str) or not isinstance(content, dict):
        raise BadJson("initial_state entries need a string 'state_key' and an object 'content'")
    if entry["type"] == EventTypes.CREATE:
        raise BadJson("m.room.create cannot be set through initial_state")
    return entry["type"], state_key, content


# -- membership ---------------------------------------------------------------------------------------

def _restricted_join_extra(locked: LockedRoom, user: User, version: RoomVersion) -> dict[str, Any] | None:
    """For a restricted room the user isn't invited to: pick a local joined member with invite power
    as ``join_authorised_via_users_server`` if the user is joined to one of the allowed rooms."""
    room = locked.room
    if room.join_rule not in (JoinRules.RESTRICTED, JoinRules.KNOCK_RESTRICTED):
        return None
    keys = {(EventTypes.JOIN_RULES, ""), (EventTypes.POWER_LEVELS, ""), (EventTypes.CREATE, "")}
    rows = state_events_for_keys(room.room_id, keys)
    join_rules = rows.get((EventTypes.JOIN_RULES, ""))
    allow = (join_rules.content.get("allow") if join_rules else None) or []
    allowed_rooms = [a.get("room_id") for a in allow if isinstance(a, dict) and a.get("type") == "m.room_membership"]
    if not Membership.objects.filter(user=user, membership=M.JOIN, room_id__in=[r for r in allowed_rooms if r]).exists():
        return None
    state = {k: as_state_event(v) for k, v in rows.items()}
    creators = room_creators(state.get(CREATE_KEY), version)
    levels = PowerLevels.from_state(state, version, creators)
    for member in Membership.objects.filter(room=room, membership=M.JOIN, user__isnull=False).order_by("stream_pos"):
        if member.mxid in creators or levels.user_level(member.mxid) >= levels.invite:
            return {"join_authorised_via_users_server": member.mxid}
    return None


@transaction.atomic
def join_room(*, user: User, room_id_or_alias: str, reason: str | None = None) -> str:
    room_id = resolve_room_id_or_alias(room_id_or_alias)
    locked = lock_room(room_id)
    current = find_membership(room_id, user.mxid)
    if current is not None and current.membership == M.JOIN:
        return room_id  # joining again changes nothing
    extra = None
    if current is None or current.membership != M.INVITE:
        extra = _restricted_join_extra(locked, user, get_room_version(locked.room.version))
    _member(locked, user, user.mxid, _member_content(user, M.JOIN, reason=reason, extra=extra))
    return room_id


@transaction.atomic
def knock_room(*, user: User, room_id_or_alias: str, reason: str | None = None) -> str:
    room_id = resolve_room_id_or_alias(room_id_or_alias)
    locked = lock_room(room_id)
    _member(locked, user, user.mxid, _member_content(user, M.KNOCK, reason=reason))
    return room_id


@transaction.atomic
def invite_user(*, sender: User, room_id: str, target: str, reason: str | None = None,
                is_direct: bool = False) -> None:
    invitee = _local_user(target)
    locked = lock_room(room_id)
    extra = {"is_direct": True} if is_direct else None
    _member(locked, sender, invitee.mxid, _member_content(invitee, M.INVITE, reason=reason, extra=extra))


@transaction.atomic
def leave_room(*, user: User, room_id: str, reason: str | None = None) -> None:
    locked = lock_room(room_id)
    current = find_membership(room_id, user.mxid)
    if current is None or current.membership in (M.LEAVE, M.BAN):
        if current is not None and current.membership == M.LEAVE:
            return  # already left: nothing to do
        raise Forbidden("You are not a member of this room")
    _member(locked, user, user.mxid, _member_content(None, M.LEAVE, reason=reason))


@transaction.atomic
def kick_user(*, sender: User, room_id: str, target: str, reason: str | None = None,
              ignore_block: bool = False) -> None:
    UserID.parse(target)
    locked = lock_room(room_id)
    current = find_membership(room_id, target)
    if current is None or current.membership not in (M.JOIN, M.INVITE, M.KNOCK):
        raise Forbidden("The user is not a member of this room")
    draft = EventDraft(type=EventTypes.MEMBER, sender=sender.mxid,
                       content=_member_content(None, M.LEAVE, reason=reason), state_key=target)
    append_event(locked, draft, ignore_block=ignore_block)


@transaction.atomic
def ban_user(*, sender: User, room_id: str, target: str, reason: str | None = None,
             ignore_block: bool = False) -> None:
    UserID.parse(target)
    locked = lock_room(room_id)
    draft = EventDraft(type=EventTypes.MEMBER, sender=sender.mxid,
                       content=_member_content(None, M.BAN, reason=reason), state_key=target)
    append_event(locked, draft, ignore_block=ignore_block)


@transaction.atomic
def unban_user(*, sender: User, room_id: str, target: str, reason: str | None = None) -> None:
    UserID.parse(target)
    locked = lock_room(room_id)
    current = find_membership(room_id, target)
    if current is None or current.membership != M.BAN:
        raise Forbidden("The user is not banned from this room")
    _member(locked, sender, target, _member_content(None, M.LEAVE, reason=reason))


def forget_room(*, user: User, room_id: str) -> None:
    current = find_membership(room_id, user.mxid)
    if current is None:
        raise NotFound("You have never been a member of this room")
    if current.membership in (M.JOIN, M.INVITE, M.KNOCK):
        raise Unknown("You must leave the room before forgetting it")
    Membership.objects.filter(pk=current.pk).update(forgotten=True)


# -- aliases and the directory -------------------------------------------------------------------------

class AliasConflict(Unknown):
    """PUT /directory/room/{alias} for a taken alias: 409 (spec), unlike createRoom's 400 M_ROOM_IN_USE."""

    status, default_message = 409, "Room alias already exists"


def _power_for_state(room_id: str, user: User, event_type: str) -> bool:
    """Whether ``user`` could send the state event ``event_type`` (the directory's permission check)."""
    room_version = get_room_version(lock_room(room_id).room.version)
    keys = {(EventTypes.POWER_LEVELS, ""), (EventTypes.CREATE, ""), (EventTypes.MEMBER, user.mxid)}
    state = {k: as_state_event(v) for k, v in state_events_for_keys(room_id, keys).items()}
    member = state.get((EventTypes.MEMBER, user.mxid))
    if member is None or member.content.get("membership") != M.JOIN:
        return False
    creators = room_creators(state.get(CREATE_KEY), room_version)
    if user.mxid in creators and room_version.creators_have_infinite_power:
        return True
    levels = PowerLevels.from_state(state, room_version, creators)
    return levels.user_level(user.mxid) >= levels.required_to_send(event_type, is_state=True)


@transaction.atomic
def create_alias(*, user: User, alias: str, room_id: str) -> None:
    parsed = RoomAliasID.parse(alias)
    if parsed.server_name != _server_name():
        raise InvalidParam("Room alias must be on this server")
    locked = lock_room(room_id)
    membership = find_membership(room_id, user.mxid)
    if not user.is_staff and (membership is None or membership.membership != M.JOIN):
        raise Forbidden("You must be joined to the room to give it an alias")
    try:
        with transaction.atomic():
            RoomAlias.objects.create(alias=alias, room=locked.room, creator=user.mxid)
    except IntegrityError:
        raise AliasConflict() from None


@transaction.atomic
def delete_alias(*, user: User, alias: str) -> None:
    """Allowed for its creator, for whoever can change the room's canonical alias, and server admins.
    If it was the room's canonical alias, the m.room.canonical_alias event is updated to drop it."""
    RoomAliasID.parse(alias)
    row = RoomAlias.objects.filter(alias=alias).first()
    if row is None:
        raise NotFound("Room alias not found")
    allowed = row.creator == user.mxid or user.is_staff or _power_for_state(row.room_id, user, EventTypes.CANONICAL_ALIAS)
    if not allowed:
        raise Forbidden("You may not delete this alias")
    room_id = row.room_id
    row.delete()
    rows = state_events_for_keys(room_id, {(EventTypes.CANONICAL_ALIAS, "")})
    canonical = rows.get((EventTypes.CANONICAL_ALIAS, ""))
    if canonical is None:
        return
    content = dict(canonical.content)
    changed = False
    if content.get("alias") == alias:
        content.pop("alias")
        changed = True
    alts = content.get("alt_aliases")
    if isinstance(alts, list) and alias in alts:
        content["alt_aliases"] = [a for a in alts if a != alias]
        changed = True
    if changed:
        try:
            with transaction.atomic():  # a savepoint: a rejected event must not doom the deletion
                send_state_event(sender=user, room_id=room_id, event_type=EventTypes.CANONICAL_ALIAS,
                                 state_key="", content=content)
        except Forbidden:
            # The deleter may not send the event (an alias's creator without power): the alias is
            # gone and the stale canonical alias is left for someone with power to fix.
            pass


@transaction.atomic
def set_room_directory_visibility(*, user: User, room_id: str, visibility: str) -> None:
    if visibility not in ("public", "private"):
        raise InvalidParam("visibility must be 'public' or 'private'")
    locked = lock_room(room_id)
    if not (user.is_staff or _power_for_state(room_id, user, EventTypes.CANONICAL_ALIAS)):
        raise Forbidden("You may not change this room's directory visibility")
    locked.room.is_public = visibility == "public"
    locked.room.save(update_fields=["is_public"])


# -- profiles -------------------------------------------------------------------------------------------

class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "leave this profile field as it is" (None clears it)


def set_profile(*, user: User, displayname: str | None = UNSET, avatar_url: str | None = UNSET) -> list[str]:
    """Change the user's profile and announce it in every room they are joined to (spec, "Profiles":
    a new m.room.member join event with the new displayname/avatar_url). Returns the rooms updated.

    The account is updated in one transaction. Then each joined room (in room ID order) gets its own
    atomic block: the room is locked, the user's membership re-checked under the lock (they may have
    left since the one query that listed the rooms: a "join" must never re-join them), and the event
    goes through append_event. A room whose auth rules refuse the event (or that is blocked) is
    skipped; the atomic block is a savepoint, so the refusal dooms nothing else.

    Called outside a transaction (the API), every room is its own short transaction, so the global
    stream lock is never held across rooms. Called inside the caller's transaction (the admin), every
    room is locked first, in order, before the first event takes the stream lock: DESIGN 4.3's lock
    order (room rows, then the stream lock) holds across rooms too.
    """
    fields = []
    if displayname is not UNSET:
        user.displayname = displayname or None
        fields.append("displayname")
    if avatar_url is not UNSET:
        user.avatar_url = avatar_url or None
        fields.append("avatar_url")
    if not fields:
        return []
    outer = connection.in_atomic_block
    with transaction.atomic():
        user.save(update_fields=fields)
    room_ids = sorted(joined_room_ids(user.pk))
    if outer:
        for room_id in room_ids:
            lock_room(room_id)  # NotFound cannot happen: Membership rows cascade with their room
    updated = []
    for room_id in room_ids:
        try:
            with transaction.atomic():
                locked = lock_room(room_id)
                current = find_membership(room_id, user.mxid)
                if current is None or current.membership != M.JOIN:
                    continue  # left (or was kicked) since the rooms were listed
                _member(locked, user, user.mxid, _member_content(user, M.JOIN))
        except Forbidden:
            continue  # the room's auth rules refuse it (or the room is blocked): skip that room
        updated.append(room_id)
    return updated
