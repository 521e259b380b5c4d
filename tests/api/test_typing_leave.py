"""Typing ends with membership: a user who leaves, is kicked or banned while typing stops being shown
typing to the others at once, in the same /sync that brings the membership change, not when the
typing timeout runs out (spec "Typing Notifications": ``user_ids`` are the users *in the room*
currently typing). Through the real routes; how it works is in ephemeral/selectors.py's docstring."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from ephemeral import actions as ephemeral_actions
from ephemeral.models import Typing
from tests.api import test_sync_longpoll as longpoll
from tests.api.test_sync_longpoll import SLOW, ReadCounter, async_sync, in_thread, run
from tests.api.test_typing_api import set_typing, typing_events
from tests.matrix_client import MatrixClient
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import sync, timeline

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

db_mode, reads = longpoll.db_mode, longpoll.reads

pytestmark = pytest.mark.django_db


def _member_change(body: dict[str, Any], room_id: str, user: TestUser) -> str | None:
    for event in timeline(body, room_id):
        if event["type"] == "m.room.member" and event["state_key"] == user.user_id:
            return event["content"]["membership"]
    return None


def _leave(matrix: MatrixClient, how: str, owner: TestUser, typer: TestUser, room_id: str) -> str:
    if how == "leave":
        matrix.leave(typer, room_id)
        return "leave"
    if how == "kick":
        matrix.kick(owner, room_id, typer.user_id)
        return "leave"
    matrix.ban(owner, room_id, typer.user_id)
    return "ban"


@pytest.mark.parametrize("how", ["leave", "kick", "ban"])
def test_a_typer_who_leaves_stops_typing_in_the_same_sync(
    any_prefix_client: MatrixClient, alice: TestUser, bob: TestUser, make_user: Any, how: str
) -> None:
    matrix = any_prefix_client
    carol = make_user()
    room = joined_room_with(matrix, alice, bob, carol)
    set_typing(matrix, carol, room)
    set_typing(matrix, alice, room)
    seen = sync(matrix, bob)
    assert sorted(typing_events(seen, room)[0]) == sorted([alice.user_id, carol.user_id])

    membership = _leave(matrix, how, alice, carol, room)
    body = sync(matrix, bob, since=seen["next_batch"])
    assert _member_change(body, room, carol) == membership
    assert typing_events(body, room) == [[alice.user_id]]  # Carol gone, Alice still typing
    # An initial sync does not show her either.
    assert typing_events(sync(matrix, bob), room) == [[alice.user_id]]


def test_the_departed_typer_is_announced_once_and_not_shown_after_a_rejoin(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room = joined_room_with(matrix, alice, bob)
    set_typing(matrix, bob, room)
    seen = sync(matrix, alice)
    assert typing_events(seen, room) == [[bob.user_id]]
    matrix.leave(bob, room)
    body = sync(matrix, alice, since=seen["next_batch"])
    assert typing_events(body, room) == [[]]
    # That read announced the change at a new position: the row is cleared for good.
    row = Typing.objects.get(room_id=room, mxid=bob.user_id)
    assert row.expires_at_ms == 0
    assert ephemeral_actions.expire_typing(room_ids=[room]) is None  # nothing left to announce
    after = sync(matrix, alice, since=body["next_batch"])
    assert typing_events(after, room) == [[]]  # the announcement itself: the same (empty) set
    quiet = sync(matrix, alice, since=after["next_batch"])
    assert typing_events(quiet, room) == []  # and nothing more after it
    # Bob comes back without typing: his old row does not make him typing again.
    matrix.join(bob, room)
    back = sync(matrix, alice, since=quiet["next_batch"])
    assert _member_change(back, room, bob) == "join"
    assert typing_events(back, room) == []
    assert typing_events(sync(matrix, alice), room) == []
    # Typing after the rejoin is a new change and shows as usual.
    set_typing(matrix, bob, room)
    assert typing_events(sync(matrix, alice, since=back["next_batch"]), room) == [[bob.user_id]]


def test_the_departed_typer_cannot_type_in_the_room(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room = joined_room_with(matrix, alice, bob)
    set_typing(matrix, bob, room)
    matrix.leave(bob, room)
    set_typing(matrix, bob, room, expect=403)
    assert typing_events(sync(matrix, alice), room) == []


def test_a_non_typer_leaving_changes_no_typing(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user: Any
) -> None:
    carol = make_user()
    room = joined_room_with(matrix, alice, bob, carol)
    set_typing(matrix, alice, room)
    seen = sync(matrix, bob)
    matrix.leave(carol, room)
    body = sync(matrix, bob, since=seen["next_batch"])
    assert _member_change(body, room, carol) == "leave"
    assert typing_events(body, room) == []  # the typing set did not change: not sent


@pytest.mark.django_db(transaction=True)
def test_a_leave_wakes_the_long_poll_with_the_smaller_typing_set(
    db_mode: str, reads: ReadCounter, matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room = joined_room_with(matrix, alice, bob)
    set_typing(matrix, alice, room, timeout=30_000)
    seen = sync(matrix, bob)
    assert typing_events(seen, room) == [[alice.user_id]]

    async def scenario() -> tuple[float, dict[str, Any]]:
        reads.reset()
        pending = asyncio.create_task(async_sync(bob, since=seen["next_batch"], timeout=10_000))
        await reads.until(1)
        await asyncio.sleep(0.05)
        assert not pending.done()
        await in_thread(matrix.leave, alice, room)
        return await asyncio.wait_for(pending, 5)

    elapsed, body = run(scenario)
    assert elapsed < SLOW  # woken by the leave, not by the 30 s typing timeout
    assert _member_change(body, room, alice) == "leave"
    assert typing_events(body, room) == [[]]
