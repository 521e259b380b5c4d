"""Room versions as frozen feature-flag objects (Synapse's ``RoomVersion`` idea). Pure: stdlib + errors.

We implement the three newest stable versions of the spec (``/rooms/v10``, ``/rooms/v11``,
``/rooms/v12``). Each flag names one behaviour that differs between versions, so the rule modules
branch on a flag, never on the identifier.

* v10: integer-only power levels, the ``knock_restricted`` join rule (on top of knocking from v7
  and restricted joins from v8/v9); the v9 redaction algorithm; ``m.room.create`` carries
  ``content.creator``.
* v11: the creator is the create event's ``sender``; the v11 redaction algorithm (``redacts``
  moves into ``content``; create keeps all of its content; power levels keep ``invite``).
* v12: room ID = ``"!"`` + the create event's reference hash (no server name; the create event
  has no ``room_id``); "room creators" (the create ``sender`` plus ``content.additional_creators``)
  have infinite power and may not appear in ``m.room.power_levels``; the create event is not
  selected for ``auth_events``.

The spec (``/rooms``) says servers SHOULD use room version 12 as the default for new rooms; the
auth rules, redaction algorithm and room-ID derivation of v12 are implemented in this package, so
12 is our default.
"""

from __future__ import annotations

from dataclasses import dataclass

from matrixsrv.errors import UnsupportedRoomVersion

# Names of the two redaction algorithms our versions use (the spec's fragment names).
REDACTION_RULES_V9 = "v9"  # room versions 9 and 10
REDACTION_RULES_V11 = "v11"  # room versions 11 and 12


@dataclass(frozen=True)
class RoomVersion:
    identifier: str
    # v11+: the creator is the create event's sender; v10 reads content.creator (v10 auth rule 1.4
    # rejects a create event without it).
    implicit_room_creator: bool
    # v11+: m.room.redaction carries ``redacts`` in content (top level before).
    redacts_in_content: bool
    # Which redaction algorithm applies: REDACTION_RULES_V9 or REDACTION_RULES_V11.
    redaction_rules: str
    # v12: room ID is "!" + the create event's reference hash, and the create event has no room_id.
    room_id_is_create_event_hash: bool
    # v12: room creators (create sender + additional_creators) have infinite power level.
    creators_have_infinite_power: bool
    # v12: content.additional_creators on m.room.create names more creators.
    additional_creators: bool
    # v10/v11 select m.room.create into auth_events; v12 must not (v12 auth rule 3.2).
    create_event_in_auth_events: bool
    knock_join_rule: bool
    restricted_join_rule: bool
    knock_restricted_join_rule: bool
    # v10+: power level values must be integers, never strings (v10 auth rules 9.1-9.3).
    strict_integer_power_levels: bool


ROOM_V10 = RoomVersion(
    identifier="10",
    implicit_room_creator=False,
    redacts_in_content=False,
    redaction_rules=REDACTION_RULES_V9,
    room_id_is_create_event_hash=False,
    creators_have_infinite_power=False,
    additional_creators=False,
    create_event_in_auth_events=True,
    knock_join_rule=True,
    restricted_join_rule=True,
    knock_restricted_join_rule=True,
    strict_integer_power_levels=True,
)

ROOM_V11 = RoomVersion(
    identifier="11",
    implicit_room_creator=True,
    redacts_in_content=True,
    redaction_rules=REDACTION_RULES_V11,
    room_id_is_create_event_hash=False,
    creators_have_infinite_power=False,
    additional_creators=False,
    create_event_in_auth_events=True,
    knock_join_rule=True,
    restricted_join_rule=True,
    knock_restricted_join_rule=True,
    strict_integer_power_levels=True,
)

ROOM_V12 = RoomVersion(
    identifier="12",
    implicit_room_creator=True,
    redacts_in_content=True,
    redaction_rules=REDACTION_RULES_V11,
    room_id_is_create_event_hash=True,
    creators_have_infinite_power=True,
    additional_creators=True,
    create_event_in_auth_events=False,
    knock_join_rule=True,
    restricted_join_rule=True,
    knock_restricted_join_rule=True,
    strict_integer_power_levels=True,
)

ROOM_VERSIONS: dict[str, RoomVersion] = {v.identifier: v for v in (ROOM_V10, ROOM_V11, ROOM_V12)}

# The spec (/rooms: "Servers SHOULD use room version 12 as the default room version").
DEFAULT_ROOM_VERSION = "12"


def get_room_version(identifier: str) -> RoomVersion:
    """The RoomVersion for ``identifier``; M_UNSUPPORTED_ROOM_VERSION for anything we don't implement."""
    try:
        return ROOM_VERSIONS[identifier]
    except (KeyError, TypeError):  # TypeError: an unhashable identifier from client JSON
        raise UnsupportedRoomVersion(f"Room version {identifier!r} is not supported by this server") from None
