"""Profiles through the real routes: GET/PUT/DELETE /profile/{userId}[/{field}], the defaults set at
registration, and the propagation of a change into every joined room as a new m.room.member event
(spec, "Profiles")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from accounts.actions import deactivate_user
from accounts.models import User
from events.models import Event
from rooms.actions import set_profile
from rooms.models import Membership, Room
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import sync, timeline

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db

AVATAR = "mxc://test.local/abcDEF123_-"


@pytest.fixture
def carol(make_user) -> TestUser:
    return make_user("carol")


def _profile(matrix: MatrixClient, user_id: str, field: str | None = None, **kw: Any) -> Any:
    path = f"profile/{q(user_id)}" + (f"/{field}" if field else "")
    return matrix.get(path, **kw)


def _put(matrix: MatrixClient, user: TestUser, field: str, value: Any, *, target: str | None = None,
         expect: int | None = 200) -> Any:
    return matrix.put(f"profile/{q(target or user.user_id)}/{field}", {field: value}, token=user, expect=expect)


def _member_events(room_id: str, user: TestUser) -> list[Event]:
    return list(Event.objects.filter(room_id=room_id, type="m.room.member", state_key=user.user_id)
                .order_by("stream_pos"))


# -- reading and writing -------------------------------------------------------------------------------


def test_registration_sets_the_display_name_to_the_localpart(any_prefix_client: MatrixClient, alice: TestUser) -> None:
    assert _profile(any_prefix_client, alice.user_id).json() == {"displayname": "alice"}
    assert _profile(any_prefix_client, alice.user_id, "displayname").json() == {"displayname": "alice"}


def test_put_then_get_on_both_prefixes(any_prefix_client: MatrixClient, alice: TestUser) -> None:
    matrix = any_prefix_client
    assert _put(matrix, alice, "displayname", "Alice Liddell").json() == {}
    assert _put(matrix, alice, "avatar_url", AVATAR).json() == {}
    assert _profile(matrix, alice.user_id).json() == {"displayname": "Alice Liddell", "avatar_url": AVATAR}
    assert _profile(matrix, alice.user_id, "avatar_url").json() == {"avatar_url": AVATAR}
    # GETs need no token.
    assert _profile(matrix, alice.user_id, "displayname", token=None).json() == {"displayname": "Alice Liddell"}
    user = User.objects.get(mxid=alice.user_id)
    assert (user.displayname, user.avatar_url) == ("Alice Liddell", AVATAR)


def test_unset_field_and_unknown_or_deactivated_user_are_404(matrix: MatrixClient, alice: TestUser) -> None:
    assert_matrix_error(_profile(matrix, alice.user_id, "avatar_url", expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(_profile(matrix, "@nobody:test.local", expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(_profile(matrix, "@nobody:test.local", "displayname", expect=None), 404, "M_NOT_FOUND")
    deactivate_user(user=User.objects.get(mxid=alice.user_id))
    assert_matrix_error(_profile(matrix, alice.user_id, expect=None), 404, "M_NOT_FOUND")


def test_empty_string_and_delete_clear_a_field(matrix: MatrixClient, alice: TestUser) -> None:
    _put(matrix, alice, "avatar_url", AVATAR)
    _put(matrix, alice, "displayname", "")
    assert _profile(matrix, alice.user_id).json() == {"avatar_url": AVATAR}
    assert matrix.delete(f"profile/{q(alice.user_id)}/avatar_url", token=alice).json() == {}
    assert _profile(matrix, alice.user_id).json() == {}
    assert User.objects.get(mxid=alice.user_id).avatar_url is None


def test_put_for_someone_else_is_forbidden(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    for field, value in (("displayname", "Not Bob"), ("avatar_url", AVATAR)):
        assert_matrix_error(_put(matrix, alice, field, value, target=bob.user_id, expect=None), 403, "M_FORBIDDEN")
    resp = matrix.delete(f"profile/{q(bob.user_id)}/displayname", token=alice, expect=None)
    assert_matrix_error(resp, 403, "M_FORBIDDEN")
    assert _profile(matrix, bob.user_id).json() == {"displayname": "bob"}


def test_put_needs_a_token(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.put(f"profile/{q(alice.user_id)}/displayname", {"displayname": "x"}, expect=None)
    assert_matrix_error(resp, 401, "M_MISSING_TOKEN")


@pytest.mark.parametrize(
    ("field", "body", "status", "errcode"),
    [
        ("avatar_url", {"avatar_url": "https://example.org/a.png"}, 400, "M_INVALID_PARAM"),
        ("avatar_url", {"avatar_url": "mxc://test.local"}, 400, "M_INVALID_PARAM"),
        ("avatar_url", {"avatar_url": "mxc://test.local/bad/id"}, 400, "M_INVALID_PARAM"),
        ("displayname", {"displayname": "x" * 257}, 400, "M_INVALID_PARAM"),
        ("displayname", {"displayname": 5}, 400, "M_BAD_JSON"),
        ("displayname", {"displayname": None}, 400, "M_BAD_JSON"),
        ("avatar_url", {"avatar_url": ["mxc://test.local/a"]}, 400, "M_BAD_JSON"),
        ("displayname", {"avatar_url": AVATAR}, 400, "M_MISSING_PARAM"),
        ("displayname", ["Alice"], 400, "M_BAD_JSON"),
    ],
)
def test_put_rejects_bad_values(matrix: MatrixClient, alice: TestUser, field: str, body: Any, status: int,
                                errcode: str) -> None:
    resp = matrix.put(f"profile/{q(alice.user_id)}/{field}", body, token=alice, expect=None)
    assert_matrix_error(resp, status, errcode)
    assert _profile(matrix, alice.user_id).json() == {"displayname": "alice"}


def test_displayname_at_the_length_limit_is_accepted(matrix: MatrixClient, alice: TestUser) -> None:
    _put(matrix, alice, "displayname", "x" * 256)
    assert _profile(matrix, alice.user_id, "displayname").json() == {"displayname": "x" * 256}


def test_capabilities_advertise_profile_changes(matrix: MatrixClient, alice: TestUser) -> None:
    caps = matrix.get("capabilities", token=alice).json()["capabilities"]
    assert caps["m.set_displayname"] == {"enabled": True}
    assert caps["m.set_avatar_url"] == {"enabled": True}


# -- propagation into the joined rooms -------------------------------------------------------------------


def test_a_new_display_name_reaches_every_joined_room(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser
) -> None:
    room1 = joined_room_with(matrix, alice, bob)
    room2 = joined_room_with(matrix, carol, alice)
    left = joined_room_with(matrix, carol, alice)
    matrix.leave(alice, left)
    invited = matrix.create_room(carol, invite=[alice.user_id])
    since_bob = sync(matrix, bob)["next_batch"]
    since_carol = sync(matrix, carol)["next_batch"]
    before_left, before_invited = len(_member_events(left, alice)), len(_member_events(invited, alice))

    _put(matrix, alice, "displayname", "Alice Liddell")

    for viewer, room_id in ((bob, room1), (carol, room2)):
        joined = matrix.get(f"rooms/{q(room_id)}/joined_members", token=viewer).json()["joined"]
        assert joined[alice.user_id]["display_name"] == "Alice Liddell"
        member = matrix.get_state(viewer, room_id, "m.room.member", alice.user_id, format="event")
        assert member["content"] == {"membership": "join", "displayname": "Alice Liddell"}
        assert member["sender"] == alice.user_id
        assert member["unsigned"]["prev_content"] == {"membership": "join", "displayname": "alice"}
    # The other members see the new member event in /sync.
    for viewer, room_id, since in ((bob, room1, since_bob), (carol, room2, since_carol)):
        events = timeline(sync(matrix, viewer, since=since), room_id)
        members = [e for e in events if e["type"] == "m.room.member" and e["state_key"] == alice.user_id]
        assert [e["content"] for e in members] == [{"membership": "join", "displayname": "Alice Liddell"}]
    # Rooms alice is not joined to get nothing: no re-join of a left room, no answer to an invite.
    assert len(_member_events(left, alice)) == before_left
    assert len(_member_events(invited, alice)) == before_invited
    assert Membership.objects.get(room_id=left, mxid=alice.user_id).membership == "leave"
    assert Membership.objects.get(room_id=invited, mxid=alice.user_id).membership == "invite"


def test_a_new_avatar_reaches_the_member_event_and_joined_members(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, bob, alice)
    _put(matrix, alice, "avatar_url", AVATAR)
    assert matrix.get_state(bob, room_id, "m.room.member", alice.user_id) == {
        "membership": "join", "displayname": "alice", "avatar_url": AVATAR,
    }
    joined = matrix.get(f"rooms/{q(room_id)}/joined_members", token=bob).json()["joined"]
    assert joined[alice.user_id] == {"display_name": "alice", "avatar_url": AVATAR}


def test_a_room_that_refuses_the_event_is_skipped(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    blocked = joined_room_with(matrix, bob, alice)
    open_room = joined_room_with(matrix, bob, alice)
    Room.objects.filter(room_id=blocked).update(blocked=True)  # append_event refuses every event there
    before = len(_member_events(blocked, alice))
    _put(matrix, alice, "displayname", "Alice L.")
    assert len(_member_events(blocked, alice)) == before
    assert Membership.objects.get(room_id=blocked, mxid=alice.user_id).displayname == "alice"
    assert matrix.get_state(bob, open_room, "m.room.member", alice.user_id)["displayname"] == "Alice L."
    assert User.objects.get(mxid=alice.user_id).displayname == "Alice L."


def test_set_profile_returns_the_updated_rooms_and_ignores_no_change(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, bob, alice)
    user = User.objects.get(mxid=alice.user_id)
    before = Event.objects.count()
    assert set_profile(user=user) == []
    assert Event.objects.count() == before
    assert set_profile(user=user, displayname="A", avatar_url=AVATAR) == [room_id]
    assert Event.objects.count() == before + 1  # one event per room for both fields


def test_propagation_queries_are_bounded_per_room(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    """One query lists the rooms; each further room costs the same fixed number of queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for name, rooms_to_add in (("one", 1), ("three", 2)):
        for _ in range(rooms_to_add):
            joined_room_with(matrix, bob, alice)
        with CaptureQueriesContext(connection) as ctx:
            _put(matrix, alice, "displayname", f"Alice {name}")
        counts.append(len(ctx.captured_queries))
    per_room = (counts[1] - counts[0]) / 2
    assert per_room == int(per_room) and per_room <= 14, counts  # lock, re-check, append_event (12 today)
    assert counts[0] - per_room <= 7, counts  # auth, account update, the one rooms query (5 today)
