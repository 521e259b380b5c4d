"""Builders for the pure room-rule tests: state events and drafts in a few words (after Synapse's
``_join_event`` / ``_power_levels_event`` test helpers)."""

from __future__ import annotations

from typing import Any

from events.pdu import AuthState, EventDraft, EventTypes, StateEvent
from events.room_versions import ROOM_V10, ROOM_V11, ROOM_V12, RoomVersion

ALICE = "@alice:hs"  # the room creator
BOB = "@bob:hs"
CAROL = "@carol:hs"
DAVE = "@dave:hs"
EVE = "@eve:other"  # another server

ALL_VERSIONS = [ROOM_V10, ROOM_V11, ROOM_V12]
VERSION_IDS = [v.identifier for v in ALL_VERSIONS]

CREATE_EVENT_ID = "$createhash"


def create(
    creator: str = ALICE,
    version: RoomVersion = ROOM_V11,
    *,
    additional_creators: list[str] | None = None,
    **content: Any,
) -> StateEvent:
    body: dict[str, Any] = {"room_version": version.identifier}
    if not version.implicit_room_creator:
        body["creator"] = creator
    if additional_creators is not None:
        body["additional_creators"] = additional_creators
    body.update(content)
    return StateEvent(EventTypes.CREATE, "", creator, body, event_id=CREATE_EVENT_ID)


def member(user: str, membership: str, *, sender: str | None = None, **content: Any) -> StateEvent:
    return StateEvent(EventTypes.MEMBER, user, sender or user, {"membership": membership, **content})


def join(user: str) -> StateEvent:
    return member(user, "join")


def invite(user: str, by: str = ALICE) -> StateEvent:
    return member(user, "invite", sender=by)


def leave(user: str, by: str | None = None) -> StateEvent:
    return member(user, "leave", sender=by)


def ban(user: str, by: str = ALICE) -> StateEvent:
    return member(user, "ban", sender=by)


def knock(user: str) -> StateEvent:
    return member(user, "knock")


def power_levels(*, sender: str = ALICE, **content: Any) -> StateEvent:
    return StateEvent(EventTypes.POWER_LEVELS, "", sender, content)


def join_rules(rule: str, *, sender: str = ALICE, **content: Any) -> StateEvent:
    return StateEvent(EventTypes.JOIN_RULES, "", sender, {"join_rule": rule, **content})


def auth_state(*events: StateEvent) -> AuthState:
    return {(e.type, e.state_key): e for e in events}


def creator_users(version: RoomVersion) -> dict[str, int]:
    """The creator's entry in ``users`` as createRoom writes it (none in v12: creators are implicit)."""
    return {} if version.creators_have_infinite_power else {ALICE: 100}


def room(
    version: RoomVersion,
    *events: StateEvent,
    users: dict[str, int] | None = None,
    rule: str | None = "invite",
    with_power_levels: bool = True,
    **pl_content: Any,
) -> AuthState:
    """A room ALICE created and joined, with power levels (``users`` on top of the creator's
    entry) and join rules, plus ``events`` (later events replace earlier ones)."""
    base = [create(ALICE, version), join(ALICE)]
    if with_power_levels:
        base.append(power_levels(users={**creator_users(version), **(users or {})}, **pl_content))
    if rule is not None:
        base.append(join_rules(rule))
    return auth_state(*base, *events)


def state_draft(
    event_type: str, *, sender: str, content: dict[str, Any] | None = None, state_key: str = ""
) -> EventDraft:
    return EventDraft(event_type, sender, content or {}, state_key=state_key)


def message_draft(sender: str, event_type: str = "m.room.message", **content: Any) -> EventDraft:
    return EventDraft(event_type, sender, content or {"msgtype": "m.text", "body": "hi"})


def member_draft(
    target: str, membership: str | None, *, sender: str | None = None, **content: Any
) -> EventDraft:
    body = dict(content)
    if membership is not None:
        body["membership"] = membership
    return EventDraft(EventTypes.MEMBER, sender or target, body, state_key=target)


def pl_draft(*, sender: str = ALICE, **content: Any) -> EventDraft:
    return EventDraft(EventTypes.POWER_LEVELS, sender, content, state_key="")
