"""The ``m.room.power_levels`` value object and the createRoom default content. Pure.

Defaults, from the ``m.room.power_levels`` schema in the client-server spec:

* ``users_default`` 0, ``events_default`` 0, ``state_default`` 50, ``ban``/``kick``/``redact`` 50,
  ``invite`` 0, ``notifications.room`` 50 — whether the key is missing from the event or the room
  has no power levels event at all.
* With no power levels event, the room creator has 100 and everyone else 0 (v10/v11; the creator
  is ``content.creator`` in v10 and the create event's ``sender`` in v11).
* v12: the room creators (create ``sender`` + ``content.additional_creators``) have an infinitely
  high power level, always, and cannot be listed in ``users``. We represent "infinite" as
  ``CREATOR_POWER_LEVEL = 2**53``, one more than the largest integer canonical JSON allows, so it
  outranks every level an event can carry (the rule modules reject out-of-range values) and stays
  an ``int`` (Synapse uses the same value).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from events.pdu import (
    ADDITIONAL_CREATORS,
    CREATE_KEY,
    POWER_LEVELS_KEY,
    AuthState,
    EventTypes,
    StateEvent,
    is_valid_user_id,
)
from events.room_versions import RoomVersion

# Canonical JSON integers are in [-(2**53)+1, (2**53)-1] (appendices, "Canonical JSON").
MAX_POWER_LEVEL = 2**53 - 1
MIN_POWER_LEVEL = -(2**53) + 1
CREATOR_POWER_LEVEL = 2**53

# The top-level integer keys of m.room.power_levels the auth rules check (v10 auth rule 9.1).
LEVEL_KEYS = ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite")

DEFAULT_STATE_DEFAULT = 50
DEFAULT_EVENTS_DEFAULT = 0
DEFAULT_USERS_DEFAULT = 0
DEFAULT_BAN = 50
DEFAULT_KICK = 50
DEFAULT_REDACT = 50
DEFAULT_INVITE = 0
DEFAULT_NOTIFICATION_LEVEL = 50  # notifications.room "Defaults to 50 if unspecified"
DEFAULT_CREATOR_LEVEL = 100  # v10/v11, no power levels event


def is_power_level_value(value: object) -> bool:
    """True for a JSON integer within canonical JSON's range (bool is not an integer)."""
    return type(value) is int and MIN_POWER_LEVEL <= value <= MAX_POWER_LEVEL


def _as_level(value: object, default: int) -> int:
    # Values in stored power levels events of v10+ rooms passed the integer checks of the auth
    # rules; anything else (an event we never authorised) falls back to the default.
    return value if is_power_level_value(value) else default  # type: ignore[return-value]


def _as_level_map(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and is_power_level_value(v)}


def room_creators(create: StateEvent | None, version: RoomVersion) -> frozenset[str]:
    """The room's creators per the version: v10 ``content.creator``; v11 the create ``sender``;
    v12 the create ``sender`` plus every valid user ID in ``content.additional_creators``."""
    if create is None:
        return frozenset()
    if not version.implicit_room_creator:
        creator = create.content.get("creator")
        return frozenset({creator}) if isinstance(creator, str) else frozenset()
    creators = {create.sender}
    if version.additional_creators:
        extra = create.content.get(ADDITIONAL_CREATORS)
        if isinstance(extra, list):
            creators.update(u for u in extra if is_valid_user_id(u))
    return frozenset(creators)


@dataclass(frozen=True)
class PowerLevels:
    users: Mapping[str, int] = field(default_factory=dict)
    users_default: int = DEFAULT_USERS_DEFAULT
    events: Mapping[str, int] = field(default_factory=dict)
    events_default: int = DEFAULT_EVENTS_DEFAULT
    state_default: int = DEFAULT_STATE_DEFAULT
    ban: int = DEFAULT_BAN
    kick: int = DEFAULT_KICK
    redact: int = DEFAULT_REDACT
    invite: int = DEFAULT_INVITE
    notifications: Mapping[str, int] = field(default_factory=dict)
    # Users with infinite power (v12 room creators); always empty in v10/v11.
    creators: frozenset[str] = frozenset()

    @classmethod
    def from_content(cls, content: Mapping[str, Any], *, creators: Iterable[str] = ()) -> PowerLevels:
        """Read an ``m.room.power_levels`` content, filling in the spec's defaults."""
        return cls(
            users=_as_level_map(content.get("users")),
            users_default=_as_level(content.get("users_default"), DEFAULT_USERS_DEFAULT),
            events=_as_level_map(content.get("events")),
            events_default=_as_level(content.get("events_default"), DEFAULT_EVENTS_DEFAULT),
            state_default=_as_level(content.get("state_default"), DEFAULT_STATE_DEFAULT),
            ban=_as_level(content.get("ban"), DEFAULT_BAN),
            kick=_as_level(content.get("kick"), DEFAULT_KICK),
            redact=_as_level(content.get("redact"), DEFAULT_REDACT),
            invite=_as_level(content.get("invite"), DEFAULT_INVITE),
            notifications=_as_level_map(content.get("notifications")),
            creators=frozenset(creators),
        )

    @classmethod
    def from_state(
        cls, state: AuthState, version: RoomVersion, creators: frozenset[str] | None = None
    ) -> PowerLevels:
        """The power levels in force for ``state``.

        ``creators`` overrides the creators derived from the create event in ``state``.
        """
        if creators is None:
            creators = room_creators(state.get(CREATE_KEY), version)
        infinite = creators if version.creators_have_infinite_power else frozenset()
        pl = state.get(POWER_LEVELS_KEY)
        if pl is not None:
            return cls.from_content(pl.content, creators=infinite)
        # No power levels event: creator(s) 100 in v10/v11 (infinite in v12), everyone else 0;
        # every other level keeps its schema default.
        users = {} if version.creators_have_infinite_power else dict.fromkeys(creators, DEFAULT_CREATOR_LEVEL)
        return cls(users=users, creators=infinite)

    def is_creator(self, user_id: str) -> bool:
        """True for a user with infinite power (a v12 room creator)."""
        return user_id in self.creators

    def user_level(self, user_id: str) -> int:
        if user_id in self.creators:
            return CREATOR_POWER_LEVEL
        return self.users.get(user_id, self.users_default)

    def required_to_send(self, event_type: str, *, is_state: bool) -> int:
        """The spec's *required power level* for an event type (``events``, else the default)."""
        level = self.events.get(event_type)
        if level is not None:
            return level
        return self.state_default if is_state else self.events_default

    def notification_level(self, key: str) -> int:
        """Level needed to trigger the ``key`` notification (e.g. ``room`` for @room)."""
        return self.notifications.get(key, DEFAULT_NOTIFICATION_LEVEL)

    def can_send(self, user_id: str, event_type: str, *, is_state: bool) -> bool:
        return self.user_level(user_id) >= self.required_to_send(event_type, is_state=is_state)


# --- createRoom --------------------------------------------------------------------------------

PRESET_PRIVATE_CHAT = "private_chat"
PRESET_TRUSTED_PRIVATE_CHAT = "trusted_private_chat"
PRESET_PUBLIC_CHAT = "public_chat"
PRESETS = frozenset({PRESET_PRIVATE_CHAT, PRESET_TRUSTED_PRIVATE_CHAT, PRESET_PUBLIC_CHAT})

# v12 createRoom: "the power level for sending m.room.tombstone events MUST explicitly be higher
# than state_default. For example, set to 150 instead of 100."
V12_TOMBSTONE_LEVEL = 150


def default_power_levels_content(
    creator: str, *, preset: str | None, invitees: Iterable[str] = (), version: RoomVersion
) -> dict[str, Any]:
    """The initial ``m.room.power_levels`` content createRoom sends (before
    ``power_level_content_override`` is applied on top by the caller).

    The spec leaves the numbers to the server, except for v12's tombstone rule and the creator rule;
    we use Synapse's well-known defaults: ``invite`` is 50 in ``public_chat`` rooms and 0 in the
    private presets (Synapse's preset ``power_level_content_override``), plus the schema's
    ``notifications.room`` 50 written out.

    v10/v11: ``users`` holds the creator at 100, and for ``trusted_private_chat`` "all invitees are
    given the same power level as the room creator". v12: creators are implicit and must not be in
    ``users``; ``trusted_private_chat`` invitees become ``additional_creators`` of the create event
    instead (the caller puts them there), so ``users`` stays empty here.
    """
    if version.creators_have_infinite_power:
        users: dict[str, int] = {}
    else:
        users = {creator: DEFAULT_CREATOR_LEVEL}
        if preset == PRESET_TRUSTED_PRIVATE_CHAT:
            for invitee in invitees:
                users[invitee] = DEFAULT_CREATOR_LEVEL
    tombstone = V12_TOMBSTONE_LEVEL if version.creators_have_infinite_power else 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            EventTypes.NAME: 50,
            EventTypes.POWER_LEVELS: 100,
            EventTypes.HISTORY_VISIBILITY: 100,
            EventTypes.CANONICAL_ALIAS: 50,
            EventTypes.AVATAR: 50,
            EventTypes.TOMBSTONE: tombstone,
            EventTypes.SERVER_ACL: 100,
            EventTypes.ENCRYPTION: 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50 if preset == PRESET_PUBLIC_CHAT else 0,
        "historical": 100,
        "notifications": {"room": 50},
    }
