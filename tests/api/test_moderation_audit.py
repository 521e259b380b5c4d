"""The audit log: one append-only entry per moderation action, in the action's transaction; and the
moderator account's safety rules."""

from __future__ import annotations

import pytest

from accounts.models import User
from moderation import actions, selectors
from moderation.models import AuditLogEntry, AuditLogIsAppendOnly, Report
from rooms.models import Membership
from tests.matrix_client import MatrixClient, TestUser
from tests.rooms_helpers import joined_room_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(make_user) -> User:
    user = make_user("admin")
    User.objects.filter(mxid=user.user_id).update(is_staff=True)
    return User.objects.get(mxid=user.user_id)


def test_every_action_writes_one_audit_entry(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user, admin: User
) -> None:
    carol, dave = make_user("carol"), make_user("dave")
    room_id = joined_room_with(matrix, alice, bob, carol, dave, visibility="public")
    event_id = matrix.send_text(bob, room_id, "spam")
    calls = [
        ("kick_member", lambda: actions.kick_member(actor=admin, room_id=room_id, user_id=carol.user_id)),
        ("ban_member", lambda: actions.ban_member(actor=admin, room_id=room_id, user_id=carol.user_id)),
        ("unban_member", lambda: actions.unban_member(actor=admin, room_id=room_id, user_id=carol.user_id)),
        ("redact_event", lambda: actions.redact_event(actor=admin, room_id=room_id, event_id=event_id)),
        ("redact_user_events", lambda: actions.redact_user_events(actor=admin, user_id=bob.user_id)),
        ("set_room_name", lambda: actions.set_room_name(actor=admin, room_id=room_id, name="n")),
        ("set_room_topic", lambda: actions.set_room_topic(actor=admin, room_id=room_id, topic="t")),
        ("set_user_power_level",
         lambda: actions.set_user_power_level(actor=admin, room_id=room_id, user_id=bob.user_id, level=10)),
        ("remove_from_directory", lambda: actions.remove_from_directory(actor=admin, room_id=room_id)),
        ("block_room", lambda: actions.block_room(actor=admin, room_id=room_id)),
        ("unblock_room", lambda: actions.unblock_room(actor=admin, room_id=room_id)),
        ("server_ban_user", lambda: actions.server_ban_user(actor=admin, user_id=dave.user_id)),
        ("shutdown_room", lambda: actions.shutdown_room(actor=admin, room_id=room_id, reason="r")),
    ]
    for action, call in calls:
        before = AuditLogEntry.objects.count()
        call()
        assert AuditLogEntry.objects.count() == before + 1, action
        latest = AuditLogEntry.objects.order_by("-id").first()
        assert latest is not None
        assert (latest.action, latest.actor, latest.actor_name) == (action, admin, admin.mxid)
    report = actions.file_report(reporter=User.objects.get(mxid=alice.user_id), kind="room", room_id=room_id,
                                 reason="bad")
    actions.set_report_state(actor=admin, report=report, state="resolved", note="shut down")
    report.refresh_from_db()
    assert (report.state, report.handled_by, report.note) == ("resolved", admin, "shut down")
    filed, changed = AuditLogEntry.objects.order_by("-id")[:2][::-1]
    assert (filed.action, filed.actor_name, filed.target_type, filed.target) == (
        "report_filed", alice.user_id, "room", room_id
    )
    assert (changed.action, changed.target_type, changed.target, changed.details) == (
        "report_state_changed", "report", str(report.pk), {"from": "open", "to": "resolved"}
    )


def test_an_unknown_report_state_is_refused(alice: TestUser, admin: User, matrix: MatrixClient) -> None:
    room_id = matrix.create_room(alice)
    report = actions.file_report(reporter=User.objects.get(mxid=alice.user_id), kind="room", room_id=room_id)
    with pytest.raises(Exception) as raised:
        actions.set_report_state(actor=admin, report=report, state="closed")
    assert raised.value.errcode == "M_INVALID_PARAM"  # type: ignore[attr-defined]
    assert Report.objects.get(pk=report.pk).state == "open"


def test_audit_entries_cannot_be_changed_or_deleted(matrix: MatrixClient, alice: TestUser, admin: User) -> None:
    room_id = matrix.create_room(alice)
    actions.block_room(actor=admin, room_id=room_id, reason="original")
    entry = AuditLogEntry.objects.get()
    entry.reason = "rewritten"
    with pytest.raises(AuditLogIsAppendOnly):
        entry.save()
    with pytest.raises(AuditLogIsAppendOnly):
        entry.save(update_fields=["reason"])
    with pytest.raises(AuditLogIsAppendOnly):
        entry.delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditLogEntry.objects.filter(pk=entry.pk).update(reason="rewritten")
    with pytest.raises(AuditLogIsAppendOnly):
        AuditLogEntry.objects.all().delete()
    # A new instance with an existing pk is an insert (and fails), never an overwrite.
    clone = AuditLogEntry(pk=entry.pk, actor_name="x", action="x", target_type="room", target="x")
    with pytest.raises(Exception):
        from django.db import transaction

        with transaction.atomic():
            clone.save()
    assert AuditLogEntry.objects.get().reason == "original"


def test_a_refused_action_writes_no_audit_entry(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    with pytest.raises(Exception):
        actions.kick_member(actor=admin, room_id=room_id, user_id=alice.user_id)  # a v12 creator
    assert not AuditLogEntry.objects.exists()


def test_a_registered_account_is_never_adopted_as_moderator(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User
) -> None:
    # An account of that name from before it was reserved (registration refuses it now: M_EXCLUSIVE).
    squatter = User(localpart="moderator", mxid="@moderator:test.local")
    squatter.set_password("pw-123456")
    squatter.save()
    room_id = joined_room_with(matrix, alice, bob)
    with pytest.raises(Exception) as raised:
        actions.kick_member(actor=admin, room_id=room_id, user_id=bob.user_id)
    assert raised.value.errcode == "M_FORBIDDEN"  # type: ignore[attr-defined]
    assert "registered account" in raised.value.message  # type: ignore[attr-defined]


def test_the_moderator_localpart_is_configurable(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User, settings
) -> None:
    settings.MATRIX = {**settings.MATRIX, "MODERATOR_LOCALPART": "_mod"}
    room_id = joined_room_with(matrix, alice, bob)
    actions.kick_member(actor=admin, room_id=room_id, user_id=bob.user_id)
    assert actions.moderator_account().mxid == "@_mod:test.local"
    kick = Membership.objects.get(room_id=room_id, mxid=bob.user_id).event
    assert (kick.sender, kick.membership) == ("@_mod:test.local", "leave")
    assert not User.objects.filter(localpart="moderator").exists()


def test_selectors_for_the_admin(matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User) -> None:
    room_id = joined_room_with(matrix, alice, bob, name="Room", room_alias_name="sel")
    spam = matrix.send_text(bob, room_id, "spam")
    actions.redact_event(actor=admin, room_id=room_id, event_id=spam)
    overview = selectors.room_overview(room_id)
    assert (overview["name"], overview["aliases"], overview["joined_count"], overview["blocked"]) == (
        "Room", ["#sel:test.local"], 3, False
    )
    timeline = selectors.room_timeline(room_id, before_pos=None, limit=3)
    assert timeline[0]["type"] == "m.room.redaction"
    redacted = next(e for e in selectors.room_timeline(room_id, before_pos=None) if e["event_id"] == spam)
    assert redacted["redacted"] and redacted["content"] == {}
    older = selectors.room_timeline(room_id, before_pos=timeline[-1]["stream_pos"], limit=50)
    assert all(e["stream_pos"] < timeline[-1]["stream_pos"] for e in older)
    members = {m["user_id"]: m for m in selectors.room_members(room_id)}
    assert members[alice.user_id]["creator"] and members["@moderator:test.local"]["power_level"] == 100
    assert any(e["type"] == "m.room.name" for e in selectors.room_current_state(room_id))
    user = selectors.user_overview(bob.user_id)
    assert [r["room_id"] for r in user["rooms"]] == [room_id] and len(user["devices"]) == 1
    report = actions.file_report(reporter=User.objects.get(mxid=alice.user_id), kind="event",
                                 room_id=room_id, event_id=matrix.send_text(bob, room_id, "more spam"))
    context = selectors.report_context(report)
    assert context["event"]["content"]["body"] == "more spam" and context["before"] and context["after"] == []


def test_the_moderator_localpart_cannot_be_registered(matrix: MatrixClient) -> None:
    """Nobody can take the moderator's name before the server first uses it (M_EXCLUSIVE)."""
    from django.conf import settings

    resp = matrix.post(
        "register",
        {"username": settings.MATRIX["MODERATOR_LOCALPART"], "password": "pw-123456",
         "auth": {"type": "m.login.dummy"}},
        expect=400,
    )
    assert resp.json()["errcode"] == "M_EXCLUSIVE"
    resp = matrix.get(f"register/available?username={settings.MATRIX['MODERATOR_LOCALPART']}", expect=400)
    assert resp.json()["errcode"] == "M_EXCLUSIVE"
