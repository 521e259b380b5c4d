"""Writing account data (layer 3): global and per-room account data, and room tags (room account data
of type ``m.tag``). Each write renews the row's stream position, allocated from the one stream counter
(events/stream.py) inside the writing transaction, and wakes the user's /sync waiters after commit.
It lives in sync/ (the model is accounts.models.AccountData): it calls events.notify, which the
app order does not let accounts/ import in the same layer.

The stream position is taken *before* the read-modify-write of a row: its lock (held until commit)
serializes all writers, so two concurrent tag changes of one room can't lose each other's update and
the upsert never races on the unique key. Everything after it is one or two small indexed
statements, so the globally serialized tail stays short.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.account_data_selectors import TAG
from accounts.models import AccountData, User
from events.notify import notify_on_commit
from events.stream import next_stream_position
from matrixsrv.errors import BadJson

# Spec ("Server Behaviour"): types the server manages; clients may read but not set them (405).
SERVER_MANAGED_TYPES = frozenset({"m.fully_read", "m.push_rules"})


class ServerManagedType(BadJson):
    """405 M_BAD_JSON: the spec's answer to a client setting a server-managed type."""

    status = 405


def _write(user: User, room_id: str | None, type: str, content: dict[str, Any], pos: int) -> None:
    updated = AccountData.objects.filter(user=user, room_id=room_id, type=type).update(
        content=content, stream_pos=pos
    )
    if not updated:
        AccountData.objects.create(user=user, room_id=room_id, type=type, content=content, stream_pos=pos)


def set_account_data(*, user: User, room_id: str | None, type: str, content: dict[str, Any]) -> int:
    """Set (replace) one piece of account data; global when ``room_id`` is None. Returns its position.
    (Validation happens before the transaction: a rejected request leaves a caller's one usable.)"""
    if type in SERVER_MANAGED_TYPES:
        raise ServerManagedType(f"Cannot set {type} through the account data API")
    with transaction.atomic(savepoint=False):
        pos = next_stream_position()
        _write(user, room_id, type, content, pos)
        notify_on_commit(pos=pos, users=[user.pk])
    return pos


def _tags_of(content: object) -> dict[str, Any]:
    tags = content.get("tags") if isinstance(content, dict) else None
    return dict(tags) if isinstance(tags, dict) else {}


def _current_tags(user: User, room_id: str) -> dict[str, Any]:
    content = (
        AccountData.objects.filter(user=user, room_id=room_id, type=TAG)
        .values_list("content", flat=True)
        .first()
    )
    return _tags_of(content)


def set_tag(*, user: User, room_id: str, tag: str, content: dict[str, Any]) -> int:
    """Add or replace the tag ``tag`` (its content: ``{"order": number}`` or ``{}``) on the room."""
    order = content.get("order")
    if "order" in content and (isinstance(order, bool) or not isinstance(order, (int, float))):
        raise BadJson("'order' must be a number")
    with transaction.atomic(savepoint=False):
        pos = next_stream_position()  # first: serializes the read-modify-write below
        tags = _current_tags(user, room_id)
        tags[tag] = content
        _write(user, room_id, TAG, {"tags": tags}, pos)
        notify_on_commit(pos=pos, users=[user.pk])
    return pos


@transaction.atomic(savepoint=False)
def remove_tag(*, user: User, room_id: str, tag: str) -> int | None:
    """Remove the tag from the room; a tag the room doesn't have is no change (no position, None)."""
    if tag not in _current_tags(user, room_id):
        return None
    pos = next_stream_position()
    tags = _current_tags(user, room_id)  # again, under the stream lock
    if tag not in tags:
        return None  # removed concurrently; the position is a harmless gap
    del tags[tag]
    _write(user, room_id, TAG, {"tags": tags}, pos)
    notify_on_commit(pos=pos, users=[user.pk])
    return pos
