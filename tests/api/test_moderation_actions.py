"""Moderation actions (moderation.actions), each checked through its real effect: the events the
members' clients receive through /sync, the room's state through the client API, the audit entry.

The actions are what the admin site calls; here they are called directly with a staff user as the
actor, and everything else goes through the real client routes.
"""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import User
from events.models import Event
from moderation import actions
from moderation.models import AuditLogEntry
from rooms.models import Membership, Room, RoomAlias
from tests.matrix_client import MatrixClient, TestUser, assert_matrix_error, q
from tests.rooms_helpers import joined_room_with, set_power_levels
from tests.sync_helpers import sync

pytestmark = pytest.mark.django_db

MODERATOR = "@moderator:test.local"


@pytest.fixture
def admin(make_user) -> User:
    """A server admin: the actor recorded in the audit log."""
    user = make_user("admin")
    User.objects.filter(mxid=user.user_id).update(is_staff=True, is_superuser=True)
    return User.objects.get(mxid=user.user_id)


def timeline(body: dict[str, Any], room_id: str, section: str = "join") -> list[dict[str, Any]]:
    return body["rooms"][section][room_id]["timeline"]["events"]


def members_events(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["sender"], e["state_key"], e["content"]["membership"]) for e in events if e["type"] == "m.room.member"]


def audit(action: str) -> list[AuditLogEntry]:
    return list(AuditLogEntry.objects.filter(action=action).order_by("id"))


def test_kick_is_sent_by_the_moderator_who_joins_and_is_given_power(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    since_alice = sync(matrix, alice)["next_batch"]
    since_bob = sync(matrix, bob)["next_batch"]

    actions.kick_member(actor=admin, room_id=room_id, user_id=bob.user_id, reason="spam")

    events = timeline(sync(matrix, alice, since=since_alice), room_id)
    # The moderator joined the public room, alice (the creator: unlimited power in v12) raised it,
    # then it kicked bob: three real events, in that order, all seen by the members at once.
    assert [(e["type"], e["sender"]) for e in events] == [
        ("m.room.member", MODERATOR),
        ("m.room.power_levels", alice.user_id),
        ("m.room.member", MODERATOR),
    ]
    assert events[1]["content"]["users"][MODERATOR] == 100
    kick = events[2]
    assert (kick["state_key"], kick["content"]) == (bob.user_id, {"membership": "leave", "reason": "spam"})
    # bob sees the kick in the room's "leave" section.
    left = timeline(sync(matrix, bob, since=since_bob), room_id, "leave")
    assert members_events(left)[-1] == (MODERATOR, bob.user_id, "leave")
    # The moderator account: created on first use, staff, no usable password, no devices.
    moderator = User.objects.get(mxid=MODERATOR)
    assert moderator.is_staff and not moderator.has_usable_password() and not moderator.devices.exists()
    [entry] = audit("kick_member")
    assert (entry.actor, entry.actor_name, entry.target_type, entry.target, entry.reason, entry.details) == (
        admin, admin.mxid, "user", bob.user_id, "spam", {"room_id": room_id}
    )


def test_a_second_action_reuses_the_moderators_membership_and_power(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user, admin: User
) -> None:
    carol = make_user("carol")
    room_id = joined_room_with(matrix, alice, bob, carol)
    actions.kick_member(actor=admin, room_id=room_id, user_id=bob.user_id)
    since = sync(matrix, alice)["next_batch"]
    actions.kick_member(actor=admin, room_id=room_id, user_id=carol.user_id)
    events = timeline(sync(matrix, alice, since=since), room_id)
    assert members_events(events) == [(MODERATOR, carol.user_id, "leave")]
    assert [e["type"] for e in events] == ["m.room.member"]


def test_private_room_the_moderator_is_invited_by_a_local_member_then_bans(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User
) -> None:
    room_id = matrix.create_room(alice, preset="private_chat", room_version="11")
    matrix.invite(alice, room_id, bob.user_id)
    matrix.join(bob, room_id)
    since = sync(matrix, bob)["next_batch"]

    actions.ban_member(actor=admin, room_id=room_id, user_id=bob.user_id, reason="abuse")

    events = timeline(sync(matrix, bob, since=since), room_id, "leave")
    assert [(e["type"], e["sender"], e.get("state_key")) for e in events] == [
        ("m.room.member", alice.user_id, MODERATOR),  # the invite
        ("m.room.member", MODERATOR, MODERATOR),  # the join
        ("m.room.power_levels", alice.user_id, ""),  # v11: alice (100) gives it 100
        ("m.room.member", MODERATOR, bob.user_id),  # the ban
    ]
    assert events[0]["content"]["membership"] == "invite"
    assert events[3]["content"] == {"membership": "ban", "reason": "abuse"}
    assert_matrix_error(matrix.join(bob, room_id, expect=None), 403, "M_FORBIDDEN")

    actions.unban_member(actor=admin, room_id=room_id, user_id=bob.user_id, reason="appeal")
    assert Membership.objects.get(room_id=room_id, mxid=bob.user_id).membership == "leave"
    assert [e.action for e in AuditLogEntry.objects.order_by("id")] == ["ban_member", "unban_member"]


def test_the_most_powerful_local_member_raises_the_moderator(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user, admin: User
) -> None:
    carol = make_user("carol")
    room_id = joined_room_with(matrix, alice, bob, carol, room_version="11")
    set_power_levels(matrix, alice, room_id, users={bob.user_id: 60})
    # bob (60) may change power levels only up to his own level, alice (100) outranks him: alice grants.
    since = sync(matrix, carol)["next_batch"]
    actions.kick_member(actor=admin, room_id=room_id, user_id=bob.user_id)
    events = timeline(sync(matrix, carol, since=since), room_id)
    grant = next(e for e in events if e["type"] == "m.room.power_levels")
    assert grant["sender"] == alice.user_id and grant["content"]["users"][MODERATOR] == 100
    assert members_events(events)[-1] == (MODERATOR, bob.user_id, "leave")


def test_no_local_user_with_power_is_forbidden_and_nothing_is_written(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user, admin: User
) -> None:
    carol = make_user("carol")
    room_id = joined_room_with(matrix, alice, bob, carol)
    matrix.leave(alice, room_id)  # the creator (the only one with power) is gone
    before = Event.objects.count()
    with pytest.raises(Exception) as raised:
        actions.kick_member(actor=admin, room_id=room_id, user_id=carol.user_id, reason="x")
    assert raised.value.errcode == "M_FORBIDDEN"  # type: ignore[attr-defined]
    assert raised.value.message.startswith("No local user has the power to")  # type: ignore[attr-defined]
    # Not even the moderator's join survived; no audit entry either.
    assert Event.objects.count() == before
    assert not Membership.objects.filter(room_id=room_id, mxid=MODERATOR).exists()
    assert Membership.objects.get(room_id=room_id, mxid=carol.user_id).membership == "join"
    assert not AuditLogEntry.objects.exists()


def test_private_room_without_anyone_to_invite_the_moderator_is_forbidden(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User
) -> None:
    room_id = matrix.create_room(alice, preset="private_chat")
    set_power_levels(matrix, alice, room_id, invite=100)
    matrix.invite(alice, room_id, bob.user_id)
    matrix.join(bob, room_id)
    matrix.leave(alice, room_id)
    before = Event.objects.count()
    with pytest.raises(Exception) as raised:
        actions.set_room_name(actor=admin, room_id=room_id, name="x")
    assert raised.value.errcode == "M_FORBIDDEN"  # type: ignore[attr-defined]
    assert Event.objects.count() == before and not AuditLogEntry.objects.exists()


def test_a_v12_creator_cannot_be_kicked_by_anyone(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    before = Event.objects.count()
    with pytest.raises(Exception) as raised:
        actions.kick_member(actor=admin, room_id=room_id, user_id=alice.user_id)
    assert raised.value.errcode == "M_FORBIDDEN"  # type: ignore[attr-defined]
    assert Event.objects.count() == before


def test_redact_one_event(matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    event_id = matrix.send_text(bob, room_id, "buy cheap stuff")
    since = sync(matrix, alice)["next_batch"]
    actions.redact_event(actor=admin, room_id=room_id, event_id=event_id, reason="spam")
    events = timeline(sync(matrix, alice, since=since), room_id)
    redaction = events[-1]
    assert (redaction["type"], redaction["sender"], redaction["content"]["redacts"]) == (
        "m.room.redaction", MODERATOR, event_id
    )
    assert redaction["content"]["reason"] == "spam"
    fetched = matrix.get(f"rooms/{q(room_id)}/event/{q(event_id)}", token=alice).json()
    assert fetched["content"] == {}
    assert fetched["unsigned"]["redacted_because"]["sender"] == MODERATOR
    [entry] = audit("redact_event")
    assert (entry.target_type, entry.target, entry.details["room_id"]) == ("event", event_id, room_id)


def test_redact_unknown_event_is_not_found(matrix: MatrixClient, alice: TestUser, admin: User) -> None:
    room_id = matrix.create_room(alice)
    with pytest.raises(Exception) as raised:
        actions.redact_event(actor=admin, room_id=room_id, event_id="$nope")
    assert raised.value.errcode == "M_NOT_FOUND"  # type: ignore[attr-defined]


def test_redact_all_of_a_users_events_in_a_room_within_a_time_window(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    import events.actions as event_actions

    room_id = joined_room_with(matrix, alice, bob)
    ids = {}
    for ts, body in ((1_000_000, "early"), (2_000_000, "middle"), (2_500_000, "middle too"), (3_000_000, "late")):
        monkeypatch.setattr(event_actions, "_now_ms", lambda ts=ts: ts)
        ids[body] = matrix.send_text(bob, room_id, body)
    alice_msg = matrix.send_text(alice, room_id, "alice stays")
    monkeypatch.undo()
    since = sync(matrix, alice)["next_batch"]

    count = actions.redact_user_events(
        actor=admin, user_id=bob.user_id, room_id=room_id, since_ms=1_500_000, until_ms=2_500_000, reason="spam"
    )

    assert count == 2
    redacted = {e["content"]["redacts"] for e in timeline(sync(matrix, alice, since=since), room_id)
                if e["type"] == "m.room.redaction"}
    assert redacted == {ids["middle"], ids["middle too"]}
    contents = {eid: Event.objects.get(event_id=eid).content for eid in [*ids.values(), alice_msg]}
    assert contents[ids["middle"]] == {} and contents[ids["middle too"]] == {}
    assert contents[ids["early"]]["body"] == "early" and contents[ids["late"]]["body"] == "late"
    assert contents[alice_msg]["body"] == "alice stays"
    # Again, without a window: the two already redacted are skipped, the rest of bob's events go.
    remaining = Event.objects.filter(room_id=room_id, sender=bob.user_id, redacted_because__isnull=True).count()
    assert actions.redact_user_events(actor=admin, user_id=bob.user_id, room_id=room_id) == remaining
    assert not Event.objects.filter(
        room_id=room_id, sender=bob.user_id, redacted_because__isnull=True
    ).exclude(type="m.room.redaction").exists()
    assert [e.details["count"] for e in audit("redact_user_events")] == [2, remaining]


def test_redact_a_users_events_server_wide(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user, admin: User
) -> None:
    carol = make_user("carol")
    room1 = joined_room_with(matrix, alice, bob)
    room2 = joined_room_with(matrix, carol, bob)
    spam = [matrix.send_text(bob, room1, "spam 1"), matrix.send_text(bob, room2, "spam 2")]
    kept = matrix.send_text(carol, room2, "not spam")
    since = sync(matrix, carol)["next_batch"]
    count = actions.redact_user_events(actor=admin, user_id=bob.user_id, reason="spam wave")
    assert count == 4  # bob's join and message in each room
    assert all(Event.objects.get(event_id=e).content == {} for e in spam)
    assert Event.objects.get(event_id=kept).content["body"] == "not spam"
    events = timeline(sync(matrix, carol, since=since), room2)
    assert {e["content"]["redacts"] for e in events if e["type"] == "m.room.redaction"} >= {spam[1]}
    [entry] = audit("redact_user_events")
    assert entry.details["room_id"] is None and entry.details["skipped_rooms"] == []


def test_set_room_name_topic_and_power_level(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User
) -> None:
    room_id = joined_room_with(matrix, alice, bob, name="Old name")
    since = sync(matrix, bob)["next_batch"]
    actions.set_room_name(actor=admin, room_id=room_id, name="Cleaned up", reason="offensive name")
    actions.set_room_topic(actor=admin, room_id=room_id, topic="Be nice")
    actions.set_user_power_level(actor=admin, room_id=room_id, user_id=bob.user_id, level=50)
    events = timeline(sync(matrix, bob, since=since), room_id)
    by_type = {e["type"]: e for e in events if e["sender"] == MODERATOR}
    assert by_type["m.room.name"]["content"] == {"name": "Cleaned up"}
    assert by_type["m.room.topic"]["content"]["topic"] == "Be nice"
    assert by_type["m.room.power_levels"]["content"]["users"][bob.user_id] == 50
    assert matrix.get_state(bob, room_id, "m.room.name") == {"name": "Cleaned up"}
    assert Room.objects.get(pk=room_id).name == "Cleaned up"
    assert [e.action for e in AuditLogEntry.objects.order_by("id")] == [
        "set_room_name", "set_room_topic", "set_user_power_level"
    ]
    assert audit("set_user_power_level")[0].details == {"room_id": room_id, "level": 50, "previous": None}


def test_remove_from_directory(matrix: MatrixClient, alice: TestUser, admin: User) -> None:
    room_id = matrix.create_room(alice, visibility="public", preset="public_chat")
    assert room_id in [r["room_id"] for r in matrix.get("publicRooms", token=alice).json()["chunk"]]
    actions.remove_from_directory(actor=admin, room_id=room_id, reason="not for the directory")
    assert room_id not in [r["room_id"] for r in matrix.get("publicRooms", token=alice).json()["chunk"]]
    assert matrix.get(f"directory/list/room/{q(room_id)}").json() == {"visibility": "private"}
    assert audit("remove_from_directory")[0].target == room_id


def test_server_ban_deactivates_and_leaves_every_room(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User
) -> None:
    room1 = joined_room_with(matrix, alice, bob)
    room2 = matrix.create_room(alice, preset="private_chat")
    matrix.invite(alice, room2, bob.user_id)
    since = sync(matrix, alice)["next_batch"]

    actions.server_ban_user(actor=admin, user_id=bob.user_id, reason="spammer")

    body = sync(matrix, alice, since=since)
    assert members_events(timeline(body, room1)) == [(bob.user_id, bob.user_id, "leave")]
    assert members_events(timeline(body, room2)) == [(bob.user_id, bob.user_id, "leave")]
    assert timeline(body, room1)[0]["content"]["reason"] == "spammer"
    user = User.objects.get(mxid=bob.user_id)
    assert not user.is_active and not user.devices.exists()
    assert_matrix_error(matrix.whoami(bob, expect=None), 401, "M_UNKNOWN_TOKEN")
    assert set(Membership.objects.filter(mxid=bob.user_id).values_list("membership", flat=True)) == {"leave"}
    [entry] = audit("server_ban_user")
    assert entry.details == {"rooms_left": sorted([room1, room2])}


def test_server_ban_of_an_unknown_user_is_not_found(admin: User) -> None:
    with pytest.raises(Exception) as raised:
        actions.server_ban_user(actor=admin, user_id="@nobody:test.local")
    assert raised.value.errcode == "M_NOT_FOUND"  # type: ignore[attr-defined]


def test_shutdown_kicks_everyone_removes_aliases_blocks_and_opens_a_notice_room(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user, admin: User
) -> None:
    carol, dave = make_user("carol"), make_user("dave")
    room_id = matrix.create_room(alice, preset="public_chat", visibility="public", room_alias_name="bad",
                                 room_version="11")
    matrix.put(f"directory/room/{q('#bad2:test.local')}", {"room_id": room_id}, token=alice)
    matrix.join(bob, room_id)
    matrix.join(carol, room_id)
    matrix.invite(alice, room_id, dave.user_id)
    since = {u.user_id: sync(matrix, u)["next_batch"] for u in (alice, bob, carol, dave)}

    notice = actions.shutdown_room(actor=admin, room_id=room_id, reason="Illegal content",
                                   notice_room_name="About your room", notice_message="It was shut down.")

    room = Room.objects.get(pk=room_id)
    assert room.blocked and room.blocked_reason == "Illegal content" and not room.is_public
    assert not RoomAlias.objects.filter(room_id=room_id).exists()
    assert_matrix_error(matrix.get(f"directory/room/{q('#bad:test.local')}", expect=None), 404, "M_NOT_FOUND")
    # Nobody local is left but the moderator. alice (100, like the moderator after her grant) can't be
    # outranked, so she is made to leave; the others are kicked by the moderator with the reason.
    active = Membership.objects.filter(room_id=room_id, membership__in=["join", "invite"])
    assert list(active.values_list("mxid", flat=True)) == [MODERATOR]
    body = sync(matrix, carol, since=since[carol.user_id])
    kick = members_events(timeline(body, room_id, "leave"))[-1]
    assert kick == (MODERATOR, carol.user_id, "leave")
    assert timeline(body, room_id, "leave")[-1]["content"]["reason"] == "Illegal content"
    # dave's invite was withdrawn, and the moderator could fix the canonical alias.
    dave_body = sync(matrix, dave, since=since[dave.user_id])
    assert room_id in dave_body["rooms"]["leave"]
    canonical = Event.objects.filter(room_id=room_id, type="m.room.canonical_alias").order_by("-stream_pos")[0]
    assert canonical.sender == MODERATOR and "alias" not in canonical.content
    # The notice room: made by the moderator, every removed member invited, the notice sent.
    assert notice is not None
    assert dave_body["rooms"]["invite"][notice]
    for user in (alice, bob, carol, dave):
        assert Membership.objects.get(room_id=notice, mxid=user.user_id).membership == "invite"
    matrix.join(bob, notice)
    messages = [e for e in matrix.get(f"rooms/{q(notice)}/messages", token=bob, query={"dir": "b"}).json()["chunk"]
                if e["type"] == "m.room.message"]
    assert [(m["sender"], m["content"]["body"]) for m in messages] == [(MODERATOR, "It was shut down.")]
    assert Room.objects.get(pk=notice).name == "About your room"
    # The room stays blocked: nobody can come back.
    assert_matrix_error(matrix.join(bob, room_id, expect=None), 403, "M_FORBIDDEN")
    [entry] = audit("shutdown_room")
    assert entry.details["notice_room_id"] == notice
    assert sorted(entry.details["kicked"]) == sorted([bob.user_id, carol.user_id, dave.user_id])
    assert entry.details["left"] == [alice.user_id]
    assert sorted(entry.details["aliases_removed"]) == ["#bad2:test.local", "#bad:test.local"]


def test_shutdown_without_a_notice_room_returns_none(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    assert actions.shutdown_room(actor=None, room_id=room_id, reason="gone") is None
    # v12: alice created the room (unlimited power): she leaves by herself; bob is kicked.
    assert Membership.objects.get(room_id=room_id, mxid=alice.user_id).event.sender == alice.user_id
    assert Membership.objects.get(room_id=room_id, mxid=bob.user_id).event.sender == MODERATOR
    [entry] = audit("shutdown_room")
    assert (entry.actor, entry.actor_name) == (None, "system")


def test_a_banned_moderator_is_unbanned_by_a_local_member_first(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user, admin: User
) -> None:
    carol = make_user("carol")
    room_id = joined_room_with(matrix, alice, bob, carol)
    actions.kick_member(actor=admin, room_id=room_id, user_id=carol.user_id)
    matrix.ban(alice, room_id, MODERATOR)
    since = sync(matrix, alice)["next_batch"]
    actions.kick_member(actor=admin, room_id=room_id, user_id=bob.user_id)
    events = timeline(sync(matrix, alice, since=since), room_id)
    assert members_events(events) == [
        (alice.user_id, MODERATOR, "leave"),  # the unban
        (MODERATOR, MODERATOR, "join"),
        (MODERATOR, bob.user_id, "leave"),  # its power level survived the ban: no new grant
    ]


def test_shutdown_without_anyone_to_give_the_moderator_power_makes_everyone_leave(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user, admin: User
) -> None:
    carol = make_user("carol")
    room_id = joined_room_with(matrix, alice, bob, carol)
    matrix.leave(alice, room_id)
    actions.shutdown_room(actor=admin, room_id=room_id, reason="abandoned")
    for user in (bob, carol):
        member = Membership.objects.get(room_id=room_id, mxid=user.user_id)
        assert (member.membership, member.event.sender, member.event.content["reason"]) == (
            "leave", user.user_id, "abandoned"
        )
    assert not Membership.objects.filter(room_id=room_id, mxid=MODERATOR).exists()
    assert Room.objects.get(pk=room_id).blocked
    assert sorted(audit("shutdown_room")[0].details["left"]) == sorted([bob.user_id, carol.user_id])
