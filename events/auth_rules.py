"""The spec's *authorization rules* for room versions 10, 11 and 12, numbered like the spec. Pure.

Rule numbers: v10 and v11 share one numbering; v12 inserts a rule 2 (the room ID must be the create
event's ID), so every top-level rule from 2 on is one higher in v12, and inside the power levels
rule v12 inserts 10.4 (no creators in ``users``). Top-level comments cite both (``v11 rule 5 /
v12 rule 6``); inside a rule's helper, comments cite the v10/v11 sub-rule (``4.3.2`` is v12's
``5.3.2``). Error messages cite the numbering of the room's version.

What is checked elsewhere, because the rules need data this pure function does not get:

* signatures (``join_authorised_via_users_server`` must be signed by that user's server, v11 4.2 /
  v12 5.2) and the ``auth_events`` list checks (v11 rule 2 / v12 rule 3): the events service builds
  ``auth_events`` itself from the current state, so they hold by construction as long as it selects
  the keys :func:`auth_event_keys` gives (which leaves out the create event in v12);
* "the only previous event is the m.room.create" (v11 4.3.1): inferred from ``state`` holding
  nothing but the create event — true exactly when the creator's join is the room's second event,
  since no other event can be authorised before someone has joined.

Two local policies on top of the spec rules (the events service only authorises events its own
users send):

* third-party invites (``m.room.member`` invite with ``content.third_party_invite``) are rejected:
  we don't support them (they need signature checks against an identity server's keys);
* ``m.room.redaction``: the spec's rules treat it as an ordinary event (the *redact level* is not an
  auth rule in v3+; "Handling redactions" decides whether the redaction is applied). For a local
  user we refuse it up front, as Synapse does, unless the sender has the *redact level* or is
  redacting their own event (``redacts_own_event``, decided by the caller who can load the target).
"""

from __future__ import annotations

from collections.abc import Mapping

from events.pdu import (
    ADDITIONAL_CREATORS,
    CREATE_KEY,
    FEDERATE,
    JOIN_AUTHORISED_VIA_USERS_SERVER,
    JOIN_RULES_KEY,
    POWER_LEVELS_KEY,
    AuthState,
    EventDraft,
    EventTypes,
    JoinRules,
    Membership,
    StateEvent,
    is_valid_user_id,
    member_key,
    server_name_of,
)
from events.power_levels import LEVEL_KEYS, PowerLevels, is_power_level_value
from events.power_levels import room_creators as creators_of
from events.room_versions import ROOM_VERSIONS, RoomVersion
from matrixsrv.errors import Forbidden


def _rule(version: RoomVersion, number: str) -> str:
    """Translate a v10/v11 rule number into the numbering of ``version`` (for error messages)."""
    if not version.room_id_is_create_event_hash:
        return f"auth rule {number}"
    if number == "2.4":
        return "auth rule 2"  # v12 replaced "a create event among the auth events" by its rule 2
    parts = [int(p) for p in number.split(".")]
    if parts[0] >= 2:
        parts[0] += 1  # v12 inserted rule 2
    if parts[0] == 10 and len(parts) > 1 and parts[1] >= 4:
        parts[1] += 1  # v12 inserted rule 10.4
    return "auth rule " + ".".join(str(p) for p in parts)


def _deny(version: RoomVersion, number: str, message: str) -> Forbidden:
    return Forbidden(f"{message} ({_rule(version, number)}, room version {version.identifier})")


# --- auth events selection ----------------------------------------------------------------------


def auth_types_for_event(draft: EventDraft) -> list[tuple[str, str]]:
    """The state keys the rules need to authorise ``draft`` (the server-server spec's "auth events
    selection", plus the create event, which our rules always read).

    The create event needs none. For the rest: the create event, the power levels, the sender's
    membership; for membership events also the target's membership, the join rules (join, invite,
    knock), the third-party invite named by ``signed.token`` (invite), and the membership of the
    ``join_authorised_via_users_server`` user (join; all our versions support restricted rooms).
    """
    if draft.type == EventTypes.CREATE:
        return []
    keys = [CREATE_KEY, POWER_LEVELS_KEY, member_key(draft.sender)]
    if draft.type == EventTypes.MEMBER and draft.state_key is not None:
        membership = draft.content.get("membership")
        keys.append(member_key(draft.state_key))
        if membership in (Membership.JOIN, Membership.INVITE, Membership.KNOCK):
            keys.append(JOIN_RULES_KEY)
        if membership == Membership.INVITE:
            token = _third_party_invite_token(draft.content)
            if token is not None:
                keys.append((EventTypes.THIRD_PARTY_INVITE, token))
        if membership == Membership.JOIN:
            authoriser = draft.content.get(JOIN_AUTHORISED_VIA_USERS_SERVER)
            if isinstance(authoriser, str):
                keys.append(member_key(authoriser))
    return list(dict.fromkeys(keys))  # drop duplicates (e.g. sender == target), keep order


def auth_event_keys(draft: EventDraft, version: RoomVersion) -> list[tuple[str, str]]:
    """The keys whose current events go into the PDU's ``auth_events``: the selection above, minus
    the create event in v12 ("m.room.create MUST NOT be selected", v12 auth rule 3.2)."""
    keys = auth_types_for_event(draft)
    if not version.create_event_in_auth_events:
        keys = [k for k in keys if k != CREATE_KEY]
    return keys


def _third_party_invite_token(content: Mapping[str, object]) -> str | None:
    tpi = content.get("third_party_invite")
    signed = tpi.get("signed") if isinstance(tpi, Mapping) else None
    token = signed.get("token") if isinstance(signed, Mapping) else None
    return token if isinstance(token, str) else None


# --- the rules ----------------------------------------------------------------------------------


def check_event_allowed(
    draft: EventDraft,
    state: AuthState,
    version: RoomVersion,
    *,
    room_creators: frozenset[str] | None = None,
    redacts_own_event: bool = False,
    room_id: str | None = None,
) -> None:
    """Raise Forbidden unless the authorization rules of ``version`` allow ``draft`` in ``state``.

    ``state`` is the room's current state (at least the keys :func:`auth_types_for_event` names,
    where they exist); a create event is checked against an empty state. ``room_creators``
    overrides the creators read from the create event. ``redacts_own_event``: for an
    m.room.redaction, whether its target was sent by the same user (see the module docstring).
    ``room_id``, when given, is checked too: v10/v11 create (rule 1.2, its domain must be the
    sender's), v12 create (rule 1.2, must be absent: pass None) and v12 rule 2 (any other event's
    room ID must be the create event's ID with ``!``).
    """
    if draft.type == EventTypes.CREATE:
        _check_create(draft, state, version, room_id)  # rule 1
        return

    create = state.get(CREATE_KEY)
    # v11 2.4 (there must be an m.room.create among the auth events) / v12 rule 2 (the room ID must
    # be the ID of an accepted create event): without the create event there is no room.
    if create is None:
        raise _deny(version, "2.4", "The room has no m.room.create event")
    # v12 rule 2: the room ID is the create event's ID with the sigil "!" instead of "$".
    if (
        version.room_id_is_create_event_hash
        and room_id is not None
        and create.event_id
        and room_id != "!" + create.event_id[1:]
    ):
        raise Forbidden(f"Room ID {room_id} is not the create event's ID (auth rule 2, room version 12)")

    # v11 rule 3 / v12 rule 4: m.federate false keeps other servers' users out.
    if create.content.get(FEDERATE, True) is False and server_name_of(draft.sender) != server_name_of(
        create.sender
    ):
        raise _deny(version, "3", "This room does not federate with the sender's server")

    creators = room_creators if room_creators is not None else creators_of(create, version)
    power = PowerLevels.from_state(state, version, creators)

    if draft.type == EventTypes.MEMBER:
        _check_membership(draft, state, version, power, create, creators)  # v11 rule 4 / v12 rule 5
        return

    # v11 rule 5 / v12 rule 6: the sender must be joined.
    if _membership(state, draft.sender) != Membership.JOIN:
        raise _deny(version, "5", f"{draft.sender} is not joined to the room")

    # v11 rule 6 / v12 rule 7: m.room.third_party_invite needs the invite level, nothing else.
    if draft.type == EventTypes.THIRD_PARTY_INVITE:
        if power.user_level(draft.sender) >= power.invite:
            return
        raise _deny(version, "6.1", f"{draft.sender} lacks the power level to invite users")

    # v11 rule 7 / v12 rule 8: the event type's required power level.
    required = power.required_to_send(draft.type, is_state=draft.is_state)
    sender_level = power.user_level(draft.sender)
    if required > sender_level:
        raise _deny(
            version,
            "7",
            f"{draft.sender} needs power level {required} to send {draft.type} (has {sender_level})",
        )

    # v11 rule 8 / v12 rule 9: state keys that look like user IDs belong to that user.
    if draft.state_key is not None and draft.state_key.startswith("@") and draft.state_key != draft.sender:
        raise _deny(version, "8", f"{draft.sender} may not set state with state_key {draft.state_key}")

    # v11 rule 9 / v12 rule 10
    if draft.type == EventTypes.POWER_LEVELS:
        _check_power_levels(draft, state, version, power, creators)

    if draft.type == EventTypes.REDACTION:
        check_redaction_allowed(draft, power, redacts_own_event=redacts_own_event)

    # v11 rule 10 / v12 rule 11: otherwise, allow.


def check_redaction_allowed(draft: EventDraft, power: PowerLevels, *, redacts_own_event: bool) -> None:
    """Local policy for a user's redaction (not an auth rule in v3+; see the module docstring):
    allowed for the target's own sender, or with the *redact level* (``redact``, default 50)."""
    if redacts_own_event or power.user_level(draft.sender) >= power.redact:
        return
    raise Forbidden(
        f"{draft.sender} needs power level {power.redact} to redact other users' events "
        f"(has {power.user_level(draft.sender)})"
    )


def _membership(state: AuthState, user_id: str) -> str | None:
    event = state.get(member_key(user_id))
    return event.membership if event is not None else None


# --- rule 1: m.room.create -------------------------------------------------------------------


def _check_create(draft: EventDraft, state: AuthState, version: RoomVersion, room_id: str | None) -> None:
    # 1.1: it has prev_events (the room already has state) -> reject.
    if state:
        raise _deny(version, "1.1", "m.room.create must be the first event of a room")
    if version.room_id_is_create_event_hash:
        # v12 1.2: the create event has no room_id (its ID, with "!", is the room ID).
        if room_id is not None:
            raise _deny(version, "1.2", "An m.room.create event must not have a room_id in this room version")
    elif room_id is not None and server_name_of(room_id) != server_name_of(draft.sender):
        # v10/v11 1.2: the room ID's domain must be the sender's.
        raise _deny(version, "1.2", f"Room ID {room_id} does not belong to the sender's server")
    # 1.3: content.room_version present and not a recognised version -> reject.
    room_version = draft.content.get("room_version")
    if room_version is not None and (not isinstance(room_version, str) or room_version not in ROOM_VERSIONS):
        raise _deny(version, "1.3", f"Unrecognised room version {room_version!r}")
    # v10 1.4: content has no creator -> reject.
    if not version.implicit_room_creator and "creator" not in draft.content:
        raise _deny(version, "1.4", "m.room.create content has no creator")
    # v12 1.4: additional_creators, when present, must be an array of valid user IDs.
    if version.additional_creators and ADDITIONAL_CREATORS in draft.content:
        extra = draft.content[ADDITIONAL_CREATORS]
        if not isinstance(extra, list) or not all(is_valid_user_id(u) for u in extra):
            raise _deny(version, "1.4", "additional_creators must be an array of valid user IDs")
    # 1.5: otherwise, allow.


# --- v11 rule 4 / v12 rule 5: m.room.member ------------------------------------------------------


def _check_membership(
    draft: EventDraft,
    state: AuthState,
    version: RoomVersion,
    power: PowerLevels,
    create: StateEvent,
    creators: frozenset[str],
) -> None:
    # 4.1: no state_key, or no membership in content -> reject.
    membership = draft.content.get("membership")
    if draft.state_key is None or membership is None:
        raise _deny(version, "4.1", "m.room.member needs a state_key and content.membership")
    # 4.2 (join_authorised_via_users_server signed by that user's server): a signature check, done
    # where events are signed and verified, not here.
    sender, target = draft.sender, draft.state_key
    sender_membership = _membership(state, sender)
    target_membership = _membership(state, target)
    join_rule = _join_rule(state)

    if membership == Membership.JOIN:
        _check_join(draft, state, version, power, create, creators, sender_membership, join_rule)
    elif membership == Membership.INVITE:
        # 4.4.1: third-party invites. Local policy: not supported, so always rejected.
        if "third_party_invite" in draft.content:
            raise _deny(version, "4.4.1", "Third-party invites are not supported by this server")
        # 4.4.2: the sender must be joined.
        if sender_membership != Membership.JOIN:
            raise _deny(version, "4.4.2", f"{sender} is not joined to the room, so cannot invite")
        # 4.4.3: the target must not be joined or banned.
        if target_membership in (Membership.JOIN, Membership.BAN):
            raise _deny(version, "4.4.3", f"{target} is {_describe(target_membership)}")
        # 4.4.4 / 4.4.5: the invite level.
        if power.user_level(sender) < power.invite:
            raise _deny(version, "4.4.5", f"{sender} lacks the power level to invite users")
    elif membership == Membership.LEAVE:
        if sender == target:
            # 4.5.1: leaving (or rejecting an invite, or withdrawing a knock) needs invite/join/knock.
            allowed = {Membership.INVITE, Membership.JOIN}
            if version.knock_join_rule:
                allowed.add(Membership.KNOCK)
            if sender_membership not in allowed:
                raise _deny(version, "4.5.1", f"{sender} cannot leave a room they are not in")
            return
        # 4.5.2: kicks and unbans need a joined sender.
        if sender_membership != Membership.JOIN:
            raise _deny(version, "4.5.2", f"{sender} is not joined to the room")
        sender_level = power.user_level(sender)
        # 4.5.3: unbanning needs the ban level.
        if target_membership == Membership.BAN and sender_level < power.ban:
            raise _deny(version, "4.5.3", f"{sender} lacks the power level to unban users")
        # 4.5.4 / 4.5.5: the kick level, and a target below the sender.
        if sender_level < power.kick or power.user_level(target) >= sender_level:
            raise _deny(version, "4.5.5", f"{sender} lacks the power level to kick {target}")
    elif membership == Membership.BAN:
        # 4.6.1: the sender must be joined.
        if sender_membership != Membership.JOIN:
            raise _deny(version, "4.6.1", f"{sender} is not joined to the room")
        # 4.6.2 / 4.6.3: the ban level, and a target below the sender.
        sender_level = power.user_level(sender)
        if sender_level < power.ban or power.user_level(target) >= sender_level:
            raise _deny(version, "4.6.3", f"{sender} lacks the power level to ban {target}")
    elif membership == Membership.KNOCK and version.knock_join_rule:
        # 4.7.1: only knock and knock_restricted rooms take knocks.
        knock_rules = {JoinRules.KNOCK}
        if version.knock_restricted_join_rule:
            knock_rules.add(JoinRules.KNOCK_RESTRICTED)
        if join_rule not in knock_rules:
            raise _deny(version, "4.7.1", "The room's join rule does not allow knocking")
        # 4.7.2: users knock only for themselves.
        if sender != target:
            raise _deny(version, "4.7.2", "Users can only knock for themselves")
        # 4.7.3 / 4.7.4: not when banned, invited or joined.
        if sender_membership in (Membership.BAN, Membership.INVITE, Membership.JOIN):
            raise _deny(version, "4.7.4", f"{sender} cannot knock: already {_describe(sender_membership)}")
    else:
        # 4.8: unknown membership.
        raise _deny(version, "4.8", f"Unknown membership {membership!r}")


def _check_join(
    draft: EventDraft,
    state: AuthState,
    version: RoomVersion,
    power: PowerLevels,
    create: StateEvent,
    creators: frozenset[str],
    sender_membership: str | None,
    join_rule: str,
) -> None:
    sender, target = draft.sender, draft.state_key
    # 4.3.1: the only previous event is the create event and the target is its creator (v10: the
    # content.creator; v11+: the create sender — in v12 not the additional creators).
    if all(key == CREATE_KEY for key in state):
        first_creator = create.content.get("creator") if not version.implicit_room_creator else create.sender
        if target == first_creator:
            return
    # 4.3.2: users join only themselves.
    if sender != target:
        raise _deny(version, "4.3.2", "Users cannot make other users join")
    # 4.3.3: the banned cannot join.
    if sender_membership == Membership.BAN:
        raise _deny(version, "4.3.3", f"{sender} is banned from the room")
    already_in = sender_membership in (Membership.INVITE, Membership.JOIN)
    # 4.3.4: invite (and knock) rooms: allow if invited or already joined.
    invite_rules = {JoinRules.INVITE}
    if version.knock_join_rule:
        invite_rules.add(JoinRules.KNOCK)
    if join_rule in invite_rules:
        if already_in:
            return
        raise _deny(version, "4.3.7", f"{sender} is not invited to this room")
    # 4.3.5: restricted (and knock_restricted) rooms.
    restricted_rules = set()
    if version.restricted_join_rule:
        restricted_rules.add(JoinRules.RESTRICTED)
    if version.knock_restricted_join_rule:
        restricted_rules.add(JoinRules.KNOCK_RESTRICTED)
    if join_rule in restricted_rules:
        # 4.3.5.1: invited or joined users don't need an authoriser.
        if already_in:
            return
        # 4.3.5.2: join_authorised_via_users_server must be a joined user with the invite level.
        authoriser = draft.content.get(JOIN_AUTHORISED_VIA_USERS_SERVER)
        if (
            not isinstance(authoriser, str)
            or _membership(state, authoriser) != Membership.JOIN
            or power.user_level(authoriser) < power.invite
        ):
            raise _deny(
                version,
                "4.3.5.2",
                "A restricted join needs join_authorised_via_users_server naming a joined member "
                "with the power level to invite",
            )
        return  # 4.3.5.3
    # 4.3.6: public rooms.
    if join_rule == JoinRules.PUBLIC:
        return
    # 4.3.7: otherwise (private, unknown), reject.
    raise _deny(version, "4.3.7", f"The room's join rule {join_rule!r} does not allow {sender} to join")


def _join_rule(state: AuthState) -> str:
    # No m.room.join_rules event (or no join_rule in it): treated as "invite", like Synapse and
    # ruma; the spec leaves it undefined, and createRoom always sends one.
    event = state.get(JOIN_RULES_KEY)
    rule = event.content.get("join_rule") if event is not None else None
    return rule if isinstance(rule, str) else JoinRules.INVITE


def _describe(membership: str | None) -> str:
    return {
        Membership.JOIN: "already joined",
        Membership.BAN: "banned",
        Membership.INVITE: "already invited",
    }.get(membership or "", str(membership))


# --- v11 rule 9 / v12 rule 10: m.room.power_levels ---------------------------------------------------


def _check_power_levels(
    draft: EventDraft,
    state: AuthState,
    version: RoomVersion,
    power: PowerLevels,
    creators: frozenset[str],
) -> None:
    content = draft.content
    if version.strict_integer_power_levels:
        # 9.1: users_default, events_default, state_default, ban, redact, kick, invite are integers.
        for key in LEVEL_KEYS:
            if key in content and not is_power_level_value(content[key]):
                raise _deny(version, "9.1", f"Power level {key!r} must be an integer")
        # 9.2: events and notifications are objects of integers.
        for key in ("events", "notifications"):
            if key in content and not _is_level_map(content[key]):
                raise _deny(version, "9.2", f"Power levels {key!r} must be an object of integers")
    # 9.3: users is an object of valid user IDs to integers.
    if "users" in content:
        users = content["users"]
        if not _is_level_map(users) or not all(is_valid_user_id(u) for u in users):
            raise _deny(version, "9.3", "Power levels 'users' must map valid user IDs to integers")
        # v12 10.4: the room creators cannot be listed.
        if version.creators_have_infinite_power:
            listed = sorted(creators.intersection(users))
            if listed:
                raise Forbidden(
                    f"Room creators cannot be given a power level: {', '.join(listed)} "
                    f"(auth rule 10.4, room version {version.identifier})"
                )

    previous = state.get(POWER_LEVELS_KEY)
    # 9.4: no previous power levels event -> allow.
    if previous is None:
        return
    old = previous.content
    sender_level = power.user_level(draft.sender)

    # 9.5: top-level levels added, changed or removed: the old and the new value must both be at
    # most the sender's level.
    for key in LEVEL_KEYS:
        old_value, new_value = old.get(key), content.get(key)
        if old_value == new_value:
            continue
        if old_value is not None and _level(old_value) > sender_level:
            raise _deny(
                version, "9.5.1", f"{draft.sender} cannot change {key!r} from a level above their own"
            )
        if new_value is not None and _level(new_value) > sender_level:
            raise _deny(version, "9.5.2", f"{draft.sender} cannot set {key!r} above their own level")

    # 9.6 / 9.7: entries of events and notifications (notifications limited like events since v6).
    for section in ("events", "notifications"):
        old_map, new_map = _mapping(old.get(section)), _mapping(content.get(section))
        for key in old_map.keys() | new_map.keys():
            old_value, new_value = old_map.get(key), new_map.get(key)
            if old_value == new_value:
                continue
            if old_value is not None and _level(old_value) > sender_level:
                raise _deny(
                    version,
                    "9.6.1",
                    f"{draft.sender} cannot change {section}[{key!r}] from a level above their own",
                )
            if new_value is not None and _level(new_value) > sender_level:
                raise _deny(
                    version, "9.7.1", f"{draft.sender} cannot set {section}[{key!r}] above their own level"
                )

    # 9.8 / 9.9: entries of users.
    old_users, new_users = _mapping(old.get("users")), _mapping(content.get("users"))
    for user_id in old_users.keys() | new_users.keys():
        old_value, new_value = old_users.get(user_id), new_users.get(user_id)
        if old_value == new_value:
            continue
        # 9.8.1: changing or removing another user's entry needs a level above theirs.
        if old_value is not None and user_id != draft.sender and _level(old_value) >= sender_level:
            raise _deny(
                version,
                "9.8.1",
                f"{draft.sender} cannot change the power level of {user_id} (at or above their own)",
            )
        # 9.9.1: no one is raised above the sender's level.
        if new_value is not None and _level(new_value) > sender_level:
            raise _deny(
                version, "9.9.1", f"{draft.sender} cannot give {user_id} a power level above their own"
            )
    # 9.10: otherwise, allow.


def _is_level_map(value: object) -> bool:
    return isinstance(value, Mapping) and all(is_power_level_value(v) for v in value.values())


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _level(value: object) -> int:
    # Old values were checked when their event was authorised (integers in v10+); new values were
    # checked by 9.1-9.3 above. Anything else counts as 0 rather than crash.
    return value if is_power_level_value(value) else 0  # type: ignore[return-value]
