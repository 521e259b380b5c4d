"""Helpers shared by the room and event API tests: reads of the stored rows the API writes.

Rooms and events are always made through the real routes (tests/matrix_client.py); these helpers
only *look* at what was stored, to assert that a rejected request wrote nothing and that events
were appended in the expected order.
"""

from __future__ import annotations

from typing import Any

from events.models import Event
from tests.matrix_client import MatrixClient, TestUser


def event_count() -> int:
    return Event.objects.count()


def room_events(room_id: str) -> list[Event]:
    """Every event of the room in stream order."""
    return list(Event.objects.filter(room_id=room_id).order_by("stream_pos"))


def event_row(event_id: str) -> Event:
    return Event.objects.get(event_id=event_id)


def state_by_key(state: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """GET /rooms/{id}/state's list, keyed (type, state_key)."""
    return {(e["type"], e["state_key"]): e for e in state}


def joined_room_with(matrix: MatrixClient, owner: TestUser, *members: TestUser, **body: Any) -> str:
    """A public room of ``owner`` that ``members`` have joined."""
    body.setdefault("preset", "public_chat")
    room_id = matrix.create_room(owner, **body)
    for member in members:
        matrix.join(member, room_id)
    return room_id


def set_power_levels(matrix: MatrixClient, owner: TestUser, room_id: str, **changes: Any) -> None:
    """Change the room's m.room.power_levels content (top-level keys; ``users`` is merged)."""
    content = matrix.get_state(owner, room_id, "m.room.power_levels")
    users = changes.pop("users", None)
    if users is not None:
        content["users"] = {**content.get("users", {}), **users}
    content.update(changes)
    matrix.send_state(owner, room_id, "m.room.power_levels", content)
