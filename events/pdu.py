"""Plain value types the pure room rules work on, and the spec's constant strings. Pure: stdlib only.

* ``StateEvent``: one event of the room's current state, as the auth rules see it.
* ``EventDraft``: an event about to be created (no event ID, DAG fields or hashes yet).
* ``AuthState``: the room's current state keyed ``(type, state_key)``; the auth rules only read
  the keys ``auth_rules.auth_types_for_event`` asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from matrixsrv.identifiers import MAX_ID_LENGTH, is_valid_server_name


class EventTypes:
    CREATE = "m.room.create"
    MEMBER = "m.room.member"
    POWER_LEVELS = "m.room.power_levels"
    JOIN_RULES = "m.room.join_rules"
    HISTORY_VISIBILITY = "m.room.history_visibility"
    NAME = "m.room.name"
    TOPIC = "m.room.topic"
    CANONICAL_ALIAS = "m.room.canonical_alias"
    REDACTION = "m.room.redaction"
    THIRD_PARTY_INVITE = "m.room.third_party_invite"
    GUEST_ACCESS = "m.room.guest_access"
    ENCRYPTION = "m.room.encryption"
    AVATAR = "m.room.avatar"
    SERVER_ACL = "m.room.server_acl"
    TOMBSTONE = "m.room.tombstone"
    PINNED_EVENTS = "m.room.pinned_events"
    MESSAGE = "m.room.message"


class Membership:
    JOIN = "join"
    INVITE = "invite"
    LEAVE = "leave"
    BAN = "ban"
    KNOCK = "knock"
    ALL = frozenset({JOIN, INVITE, LEAVE, BAN, KNOCK})


class JoinRules:
    PUBLIC = "public"
    INVITE = "invite"
    KNOCK = "knock"
    RESTRICTED = "restricted"
    KNOCK_RESTRICTED = "knock_restricted"
    PRIVATE = "private"  # reserved by the spec without meaning: no join rule lets anyone in


class HistoryVisibility:
    SHARED = "shared"
    INVITED = "invited"
    JOINED = "joined"
    WORLD_READABLE = "world_readable"
    ALL = frozenset({SHARED, INVITED, JOINED, WORLD_READABLE})


# Content keys the rules read.
JOIN_AUTHORISED_VIA_USERS_SERVER = "join_authorised_via_users_server"
ADDITIONAL_CREATORS = "additional_creators"
FEDERATE = "m.federate"

CREATE_KEY = (EventTypes.CREATE, "")
POWER_LEVELS_KEY = (EventTypes.POWER_LEVELS, "")
JOIN_RULES_KEY = (EventTypes.JOIN_RULES, "")
HISTORY_VISIBILITY_KEY = (EventTypes.HISTORY_VISIBILITY, "")


def member_key(user_id: str) -> tuple[str, str]:
    return (EventTypes.MEMBER, user_id)


@dataclass(frozen=True)
class StateEvent:
    type: str
    state_key: str
    sender: str
    content: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = ""

    @property
    def membership(self) -> str | None:
        """``content.membership`` for an m.room.member event (None if absent or not a string)."""
        value = self.content.get("membership")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class EventDraft:
    type: str
    sender: str
    content: Mapping[str, Any] = field(default_factory=dict)
    state_key: str | None = None
    redacts: str | None = None

    @property
    def is_state(self) -> bool:
        return self.state_key is not None


AuthState = Mapping[tuple[str, str], StateEvent]


# --- identifiers (the spec's appendices; kept here so the rule modules need no other import) ---

MAX_ID_BYTES = MAX_ID_LENGTH


def is_valid_user_id(value: object) -> bool:
    """A user ID the rules accept: ``@localpart:server_name``, at most 255 bytes.

    Accepts the spec's *historical* user IDs ("clients and servers MUST accept user IDs with
    localparts consisting of any legal non-surrogate Unicode code points except for ``:`` and
    ``NUL``"), because this validates IDs in events, not IDs we register.
    """
    if not isinstance(value, str) or not value.startswith("@") or ":" not in value:
        return False
    localpart, _, server_name = value[1:].partition(":")
    try:
        encoded = value.encode("utf-8")  # rejects lone surrogates
    except UnicodeEncodeError:
        return False
    return (
        len(encoded) <= MAX_ID_BYTES
        and "\x00" not in localpart
        and is_valid_server_name(server_name)
    )


def server_name_of(user_id: str) -> str:
    """The domain part of a user ID (everything after the first ``:``)."""
    return user_id.partition(":")[2]
