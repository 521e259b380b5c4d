"""Helpers for the /sync API tests: one request through the real route, and reads of its answer.

Every answer is also checked against matrix-nio's JSON schema for /sync (nio validates what it
receives, so a response it rejects breaks real clients) and against the spec's required keys.
"""

from __future__ import annotations

import json
from typing import Any

from nio.schemas import Schemas, validate_json

from tests.matrix_client import MatrixClient, TestUser, q

TOP_LEVEL_KEYS = (
    "next_batch",
    "rooms",
    "account_data",
    "presence",
    "to_device",
    "device_lists",
    "device_one_time_keys_count",
)


def sync(
    matrix: MatrixClient,
    user: TestUser,
    *,
    since: str | None = None,
    filter: dict[str, Any] | str | None = None,
    full_state: bool | None = None,
    timeout: int | None = None,
    expect: int = 200,
    **extra: Any,
) -> dict[str, Any]:
    """GET /sync; the JSON body (checked for shape on 200)."""
    query: dict[str, Any] = {"since": since, "timeout": timeout, **extra}
    if filter is not None:
        query["filter"] = filter if isinstance(filter, str) else json.dumps(filter)
    if full_state is not None:
        query["full_state"] = "true" if full_state else "false"
    resp = matrix.get("sync", token=user, query=query, expect=expect)
    body = resp.json()
    if expect == 200:
        assert_sync_shape(body)
    return body


def assert_sync_shape(body: dict[str, Any]) -> None:
    """The keys a client may rely on are there, in every room entry, even when empty."""
    validate_json(body, Schemas.sync)
    for key in TOP_LEVEL_KEYS:
        assert key in body, key
    assert isinstance(body["next_batch"], str) and body["next_batch"].startswith("s")
    for key in ("account_data", "presence", "to_device"):
        assert isinstance(body[key]["events"], list)
    assert set(body["rooms"]) == {"join", "invite", "leave", "knock"}
    for room_id, entry in body["rooms"]["join"].items():
        assert room_id.startswith("!")
        for key in ("timeline", "state", "ephemeral", "account_data"):
            assert isinstance(entry[key]["events"], list), (room_id, key)
        assert isinstance(entry["timeline"]["limited"], bool)
        assert isinstance(entry["timeline"]["prev_batch"], str)
        assert "unread_notifications" in entry
        for event in entry["timeline"]["events"] + entry["state"]["events"]:
            assert "room_id" not in event  # ClientEventWithoutRoomID
    for room_id, entry in body["rooms"]["leave"].items():
        for key in ("timeline", "state", "account_data"):
            assert isinstance(entry[key]["events"], list), (room_id, key)
        assert isinstance(entry["timeline"]["limited"], bool)
    for entry in body["rooms"]["invite"].values():
        assert isinstance(entry["invite_state"]["events"], list)
        for event in entry["invite_state"]["events"]:
            assert set(event) >= {"type", "state_key", "sender", "content"}
    for entry in body["rooms"]["knock"].values():
        assert isinstance(entry["knock_state"]["events"], list)


def pos(token: str) -> int:
    return int(token[1:])


def room_entry(body: dict[str, Any], room_id: str, section: str = "join") -> dict[str, Any]:
    rooms = body["rooms"][section]
    assert room_id in rooms, (section, room_id, {k: list(v) for k, v in body["rooms"].items()})
    return rooms[room_id]


def timeline(body: dict[str, Any], room_id: str, section: str = "join") -> list[dict[str, Any]]:
    return room_entry(body, room_id, section)["timeline"]["events"]


def state(body: dict[str, Any], room_id: str, section: str = "join") -> list[dict[str, Any]]:
    return room_entry(body, room_id, section)["state"]["events"]


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def timeline_bodies(body: dict[str, Any], room_id: str, section: str = "join") -> list[str]:
    return bodies(timeline(body, room_id, section))


def state_keys(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in events}


def messages(matrix: MatrixClient, user: TestUser, room_id: str, **query: Any) -> dict[str, Any]:
    """GET /rooms/{roomId}/messages."""
    return matrix.get(f"rooms/{q(room_id)}/messages", token=user, query=query).json()


def page_back(
    matrix: MatrixClient,
    user: TestUser,
    room_id: str,
    from_token: str,
    to_token: str | None = None,
    limit: int = 7,
) -> list[dict[str, Any]]:
    """Every event from ``from_token`` backwards (to ``to_token``), oldest first, in small pages."""
    found: list[dict[str, Any]] = []
    token: str | None = from_token
    for _ in range(200):
        page = messages(matrix, user, room_id, dir="b", limit=limit, **{"from": token, "to": to_token})
        found.extend(page["chunk"])
        token = page.get("end")
        if token is None or not page["chunk"]:
            break
    return list(reversed(found))
