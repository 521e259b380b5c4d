"""Moderation in the admin: rooms, reports, the audit log, users; through the real admin routes.

Every page is fetched and every button posted with Django's test client logged in as a server admin;
the effects are checked in the rooms' state, memberships and the audit log, and (for the members'
side) through the client API's /sync. Rooms and events are made through the client API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.test import Client
from django.urls import reverse

from accounts.models import User
from events.models import Event
from moderation.actions import file_report, moderator_mxid
from moderation.models import AuditLogEntry, Report
from rooms.models import Membership, Room, RoomAlias
from tests.matrix_client import MatrixClient, TestUser, assert_matrix_error
from tests.sync_helpers import sync, timeline

pytestmark = pytest.mark.django_db

ROOMS = reverse("admin:rooms_room_changelist")
REPORTS = reverse("admin:moderation_report_changelist")
AUDIT = reverse("admin:moderation_auditlogentry_changelist")
USERS = reverse("admin:accounts_user_changelist")
EVENTS = reverse("admin:events_event_changelist")
MEMBERSHIPS = reverse("admin:rooms_membership_changelist")
CONFIRM_TEMPLATE = "admin/moderation/confirm.html"


def room_page(room_id: str) -> str:
    return reverse("admin:rooms_room_change", args=[quote(room_id)])


def moderate_url(room_id: str) -> str:
    return reverse("admin:rooms_room_moderate", args=[quote(room_id)])


def user_page(mxid: str) -> str:
    return reverse("admin:accounts_user_change", args=[User.objects.get(mxid=mxid).pk])


def message_texts(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def moderate(http: Client, room_id: str, op: str, *, confirm: bool = True, **fields: Any) -> Any:
    """POST one operation from the room page (with the confirmation when ``confirm``); follow the redirect."""
    data = {"op": op, **{k: v for k, v in fields.items() if v is not None}}
    if confirm:
        data["confirm"] = "yes"
    return http.post(moderate_url(room_id), data, follow=True)


def membership(room_id: str, mxid: str) -> str | None:
    row = Membership.objects.filter(room_id=room_id, mxid=mxid).first()
    return row.membership if row else None


def audit_actions(target: str | None = None) -> list[str]:
    entries = AuditLogEntry.objects.order_by("pk")
    if target is not None:
        entries = entries.filter(target=target)
    return [e.action for e in entries]


@dataclass
class Conversation:
    alice: TestUser
    bob: TestUser
    room_id: str
    spam_id: str
    hello_id: str


@pytest.fixture
def conversation(matrix: MatrixClient, make_user) -> Conversation:
    """alice's public, listed room "Moderated room" (#modroom); bob joined and sent spam."""
    alice, bob = make_user("alice"), make_user("bob")
    room_id = matrix.create_room(
        alice, preset="public_chat", visibility="public", name="Moderated room", room_alias_name="modroom",
        topic="all welcome",
    )
    matrix.join(bob, room_id)
    hello_id = matrix.send_text(alice, room_id, "hello everyone")
    spam_id = matrix.send_text(bob, room_id, "BUY CHEAP STUFF")
    return Conversation(alice, bob, room_id, spam_id, hello_id)


# -- access -------------------------------------------------------------------------------------------


def test_non_staff_are_sent_to_the_login_page(conversation: Conversation) -> None:
    outsider = Client()
    bob = User.objects.get(mxid=conversation.bob.user_id)
    logged_in_non_staff = Client()
    logged_in_non_staff.force_login(bob)
    urls = [ROOMS, room_page(conversation.room_id), REPORTS, AUDIT, EVENTS, MEMBERSHIPS,
            reverse("admin:accounts_user_server_ban", args=[bob.pk])]
    for http in (outsider, logged_in_non_staff):
        for url in urls:
            response = http.get(url)
            assert response.status_code == 302 and "/admin/login/" in response["Location"], url
        response = http.post(moderate_url(conversation.room_id),
                             {"op": "kick", "user_id": conversation.alice.user_id, "confirm": "yes"})
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert membership(conversation.room_id, conversation.alice.user_id) == "join"
    assert not AuditLogEntry.objects.filter(action="kick_member").exists()


def test_moderation_posts_need_the_csrf_token(staff: User, conversation: Conversation) -> None:
    http = Client(enforce_csrf_checks=True)
    http.force_login(staff)
    response = http.post(moderate_url(conversation.room_id),
                         {"op": "kick", "user_id": conversation.bob.user_id, "confirm": "yes"})
    assert response.status_code == 403
    assert membership(conversation.room_id, conversation.bob.user_id) == "join"


# -- the room list ------------------------------------------------------------------------------------


def test_room_list_shows_counts_and_flags(admin_http: Client, conversation: Conversation) -> None:
    response = admin_http.get(ROOMS)
    assert response.status_code == 200
    (row,) = [r for r in response.context["cl"].result_list if r.room_id == conversation.room_id]
    assert row.name == "Moderated room" and row.canonical_alias == "#modroom:test.local"
    assert row.joined_count == 2 and row.invited_count == 0 and row.is_public and not row.blocked
    assert row.event_count == Event.objects.filter(room_id=conversation.room_id).count()
    assert row.last_activity_ts == Event.objects.get(event_id=conversation.spam_id).origin_server_ts
    page = response.content.decode()
    for text in ("Moderated room", "#modroom:test.local", conversation.alice.user_id):
        assert text in page


def test_room_list_searches_id_name_and_alias(admin_http: Client, conversation: Conversation,
                                              matrix: MatrixClient) -> None:
    other = matrix.create_room(conversation.alice, name="Something else")
    for query in ("moderated", "#modroom", conversation.room_id):
        found = [r.room_id for r in admin_http.get(ROOMS, {"q": query}).context["cl"].result_list]
        assert found == [conversation.room_id], query
    found = [r.room_id for r in admin_http.get(ROOMS, {"q": "else"}).context["cl"].result_list]
    assert found == [other]


def test_room_list_filters_version_public_blocked(admin_http: Client, conversation: Conversation,
                                                  matrix: MatrixClient) -> None:
    private = matrix.create_room(conversation.alice, name="Private")  # not in the directory

    def listed(**params: str) -> set[str]:
        return {r.room_id for r in admin_http.get(ROOMS, params).context["cl"].result_list}

    assert listed(is_public__exact="1") == {conversation.room_id}
    assert listed(is_public__exact="0") == {private}
    version = Room.objects.get(pk=private).version
    assert listed(version=version) == {conversation.room_id, private}
    assert listed(blocked__exact="1") == set()
    moderate(admin_http, private, "block", reason="test")
    assert listed(blocked__exact="1") == {private}
    assert listed(blocked__exact="0") == {conversation.room_id}


def test_rooms_cannot_be_added_or_deleted(admin_http: Client, conversation: Conversation) -> None:
    assert admin_http.get(reverse("admin:rooms_room_add")).status_code == 403
    delete = reverse("admin:rooms_room_delete", args=[quote(conversation.room_id)])
    assert admin_http.get(delete).status_code == 403
    response = admin_http.get(ROOMS)
    assert response.context["action_form"] is None  # no bulk actions at all (no bulk delete)
    assert Room.objects.filter(pk=conversation.room_id).exists()


# -- the room page ------------------------------------------------------------------------------------


def test_room_page_shows_overview_members_state_and_timeline(admin_http: Client,
                                                            conversation: Conversation) -> None:
    response = admin_http.get(room_page(conversation.room_id))
    assert response.status_code == 200
    context = response.context
    members = {m["user_id"]: m for m in context["members"]}
    assert members[conversation.alice.user_id]["membership"] == "join"
    # The default room version (12) gives its creator unlimited power.
    assert members[conversation.alice.user_id]["creator"]
    assert "unlimited (creator)" in response.content.decode()
    assert members[conversation.bob.user_id]["power_level"] == 0
    assert ("m.room.name", "") in {(e["type"], e["state_key"]) for e in context["state"]}
    timeline_rows = context["timeline"]
    assert [r["event_id"] for r in timeline_rows[:2]] == [conversation.spam_id, conversation.hello_id]
    assert timeline_rows[0]["sender"] == conversation.bob.user_id
    assert timeline_rows[0]["body"] == "BUY CHEAP STUFF" and timeline_rows[0]["type"] == "m.room.message"
    assert isinstance(timeline_rows[0]["time"], datetime)
    page = response.content.decode()
    for text in ("BUY CHEAP STUFF", "hello everyone", "all welcome", conversation.bob.user_id, "Kick", "Ban",
                 "Redact", "Shut down room", "Block room", "Set name", "Set topic"):
        assert text in page, text
    assert 'name="csrfmiddlewaretoken"' in page
    overview = dict(context["overview_rows"])
    assert overview["Name"] == "Moderated room" and overview["Joined members"] == 2
    # The change view edits nothing: a POST to it is refused and changes nothing.
    assert admin_http.post(room_page(conversation.room_id), {"name": "x"}).status_code == 405


def test_room_page_timeline_is_paginated_newest_first(admin_http: Client, matrix: MatrixClient,
                                                     conversation: Conversation) -> None:
    for i in range(60):
        matrix.send_text(conversation.alice, conversation.room_id, f"message {i}")
    first = admin_http.get(room_page(conversation.room_id))
    rows = first.context["timeline"]
    assert len(rows) == 50
    assert [r["body"] for r in rows[:3]] == ["message 59", "message 58", "message 57"]
    older_url = first.context["older_url"]
    assert older_url and older_url.startswith("?before=") and older_url in first.content.decode()
    second = admin_http.get(room_page(conversation.room_id) + older_url)
    older = second.context["timeline"]
    assert older[0]["body"] == "message 9"
    assert not {r["event_id"] for r in rows} & {r["event_id"] for r in older}
    # Down to the room's first event, and no further link.
    assert older[-1]["type"] == "m.room.create" and second.context["older_url"] is None


def test_redacted_events_show_as_redacted(admin_http: Client, matrix: MatrixClient,
                                          conversation: Conversation) -> None:
    matrix.redact(conversation.bob, conversation.room_id, conversation.spam_id, reason="oops")
    response = admin_http.get(room_page(conversation.room_id))
    row = next(r for r in response.context["timeline"] if r["event_id"] == conversation.spam_id)
    assert row["redacted"] and row["body"] == "redacted" and not row["can_redact"]
    assert "BUY CHEAP STUFF" not in response.content.decode()


def test_unknown_room_page_is_404(admin_http: Client, db: None) -> None:
    assert admin_http.get(room_page("!nope:test.local")).status_code == 404
    response = admin_http.post(moderate_url("!nope:test.local"), {"op": "block", "confirm": "yes"})
    assert response.status_code == 404


# -- room page actions --------------------------------------------------------------------------------


def test_kick_asks_for_confirmation_then_kicks(admin_http: Client, matrix: MatrixClient,
                                               conversation: Conversation) -> None:
    bob, room_id = conversation.bob, conversation.room_id
    since = sync(matrix, bob)["next_batch"]
    response = moderate(admin_http, room_id, "kick", confirm=False, user_id=bob.user_id, reason="spam")
    assert response.status_code == 200 and CONFIRM_TEMPLATE in [t.name for t in response.templates]
    assert 'name="confirm" value="yes"' in response.content.decode()
    assert membership(room_id, bob.user_id) == "join" and "kick_member" not in audit_actions()

    response = moderate(admin_http, room_id, "kick", user_id=bob.user_id, reason="spam")
    assert response.redirect_chain[-1][0] == room_page(room_id)
    assert message_texts(response) == [f"Kicked {bob.user_id}."]
    assert membership(room_id, bob.user_id) == "leave"
    entry = AuditLogEntry.objects.get(action="kick_member")
    assert entry.target == bob.user_id and entry.reason == "spam" and entry.actor_name == "@root:test.local"
    # bob's client sees it: the room moves to "leave", the kick sent by the moderator with the reason.
    body = sync(matrix, bob, since=since)
    kick = [e for e in timeline(body, room_id, "leave") if e["type"] == "m.room.member"][-1]
    assert kick["state_key"] == bob.user_id and kick["content"]["membership"] == "leave"
    assert kick["sender"] == moderator_mxid() and kick["content"]["reason"] == "spam"


def test_ban_and_unban(admin_http: Client, matrix: MatrixClient, conversation: Conversation) -> None:
    bob, room_id = conversation.bob, conversation.room_id
    response = moderate(admin_http, room_id, "ban", confirm=False, user_id=bob.user_id)
    assert CONFIRM_TEMPLATE in [t.name for t in response.templates]
    assert membership(room_id, bob.user_id) == "join"
    response = moderate(admin_http, room_id, "ban", user_id=bob.user_id, reason="troll")
    assert message_texts(response) == [f"Banned {bob.user_id}."]
    assert membership(room_id, bob.user_id) == "ban"
    assert_matrix_error(matrix.join(bob, room_id, expect=None), 403, "M_FORBIDDEN")
    page = admin_http.get(room_page(room_id)).content.decode()
    assert 'value="unban"' in page

    # unban is not destructive: no confirmation page.
    response = moderate(admin_http, room_id, "unban", confirm=False, user_id=bob.user_id, reason="ok")
    assert message_texts(response) == [f"Unbanned {bob.user_id}."]
    assert membership(room_id, bob.user_id) == "leave"
    matrix.join(bob, room_id)
    assert audit_actions(bob.user_id) == ["ban_member", "unban_member"]


def test_matrix_errors_are_shown_as_messages_not_500(admin_http: Client, conversation: Conversation) -> None:
    alice, room_id = conversation.alice, conversation.room_id
    response = moderate(admin_http, room_id, "unban", user_id=alice.user_id)
    assert response.status_code == 200
    (text,) = message_texts(response)
    assert text.startswith("Unban failed:") and "M_FORBIDDEN" in text and "not banned" in text
    response = moderate(admin_http, room_id, "redact_event", event_id="$nope")
    (text,) = message_texts(response)
    assert text.startswith("Redact event failed:") and "M_NOT_FOUND" in text
    response = moderate(admin_http, room_id, "kick", user_id="not a user id")
    (text,) = message_texts(response)
    assert text.startswith("Kick failed:") and "M_INVALID_PARAM" in text
    assert membership(room_id, alice.user_id) == "join"


def test_invalid_forms_and_unknown_operations_are_messages(admin_http: Client,
                                                           conversation: Conversation) -> None:
    room_id = conversation.room_id
    (text,) = message_texts(moderate(admin_http, room_id, "kick"))
    assert text.startswith("Kick: ") and "required" in text
    (text,) = message_texts(moderate(admin_http, room_id, "set_power_level", user_id="@a:test.local",
                                     level="lots"))
    assert "whole number" in text
    (text,) = message_texts(moderate(admin_http, room_id, "drop_tables"))
    assert "Unknown operation" in text
    assert admin_http.get(moderate_url(room_id)).status_code == 405


def test_redact_event(admin_http: Client, matrix: MatrixClient, conversation: Conversation) -> None:
    room_id, spam_id = conversation.room_id, conversation.spam_id
    since = sync(matrix, conversation.alice)["next_batch"]
    response = moderate(admin_http, room_id, "redact_event", confirm=False, event_id=spam_id)
    assert CONFIRM_TEMPLATE in [t.name for t in response.templates]
    assert Event.objects.get(event_id=spam_id).redacted_because is None
    response = moderate(admin_http, room_id, "redact_event", event_id=spam_id, reason="spam")
    assert message_texts(response) == [f"Redacted {spam_id}."]
    spam = Event.objects.get(event_id=spam_id)
    assert spam.redacted_because is not None and "body" not in spam.content
    redaction = [e for e in timeline(sync(matrix, conversation.alice, since=since), room_id)
                 if e["type"] == "m.room.redaction"]
    assert [e["redacts"] for e in redaction] == [spam_id]
    assert redaction[0]["sender"] == moderator_mxid() and redaction[0]["content"]["reason"] == "spam"
    assert AuditLogEntry.objects.get(action="redact_event").target == spam_id


def test_redact_all_of_a_users_events_in_the_room_within_a_window(
    admin_http: Client, matrix: MatrixClient, conversation: Conversation
) -> None:
    room_id, bob = conversation.room_id, conversation.bob
    later = [matrix.send_text(bob, room_id, f"more spam {i}") for i in range(3)]
    # Move the first spam message an hour back: a window starting 30 minutes ago leaves it alone.
    old_ts = Event.objects.get(event_id=conversation.spam_id).origin_server_ts - 3_600_000
    Event.objects.filter(event_id=conversation.spam_id).update(origin_server_ts=old_ts)
    since = (datetime.now(UTC) - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M")
    response = moderate(admin_http, room_id, "redact_user_events", user_id=bob.user_id, since=since,
                        reason="cleanup")
    (text,) = message_texts(response)
    # bob's join is his too; the create event and alice's message are not.
    assert text == f"Redacted 4 event(s) of {bob.user_id} in this room.", text
    for event_id in later:
        assert Event.objects.get(event_id=event_id).redacted_because is not None
    assert Event.objects.get(event_id=conversation.spam_id).redacted_because is None
    assert Event.objects.get(event_id=conversation.hello_id).redacted_because is None
    entry = AuditLogEntry.objects.get(action="redact_user_events")
    assert entry.details["room_id"] == room_id and entry.details["count"] == 4

    (text,) = message_texts(moderate(admin_http, room_id, "redact_user_events", user_id=bob.user_id,
                                     since="2026-01-02T00:00", until="2026-01-01T00:00"))
    assert "before its end" in text


def test_set_name_topic_and_power_level(admin_http: Client, matrix: MatrixClient,
                                        conversation: Conversation) -> None:
    room_id, bob = conversation.room_id, conversation.bob
    response = moderate(admin_http, room_id, "set_name", confirm=False, name="Cleaned room")
    assert message_texts(response) == ["Room name set."]
    response = moderate(admin_http, room_id, "set_topic", confirm=False, topic="be nice")
    assert message_texts(response) == ["Room topic set."]
    response = moderate(admin_http, room_id, "set_power_level", confirm=False, user_id=bob.user_id,
                        level="50")
    assert message_texts(response) == [f"Power level of {bob.user_id} set to 50."]
    room = Room.objects.get(pk=room_id)
    assert room.name == "Cleaned room" and room.topic == "be nice"
    assert matrix.get_state(bob, room_id, "m.room.name")["name"] == "Cleaned room"
    assert matrix.get_state(bob, room_id, "m.room.power_levels")["users"][bob.user_id] == 50
    members = {m["user_id"]: m for m in admin_http.get(room_page(room_id)).context["members"]}
    assert members[bob.user_id]["power_level"] == 50
    assert {"set_room_name", "set_room_topic", "set_user_power_level"} <= set(audit_actions())


def test_remove_from_directory(admin_http: Client, matrix: MatrixClient, conversation: Conversation) -> None:
    room_id = conversation.room_id
    response = moderate(admin_http, room_id, "remove_from_directory", confirm=False)
    assert CONFIRM_TEMPLATE in [t.name for t in response.templates]
    assert Room.objects.get(pk=room_id).is_public
    response = moderate(admin_http, room_id, "remove_from_directory", reason="not for the directory")
    assert message_texts(response) == ["Removed from the room directory."]
    assert not Room.objects.get(pk=room_id).is_public
    listed = matrix.get("publicRooms", token=conversation.bob).json()["chunk"]
    assert room_id not in [r["room_id"] for r in listed]
    assert AuditLogEntry.objects.get(action="remove_from_directory").target == room_id


def test_block_and_unblock(admin_http: Client, matrix: MatrixClient, conversation: Conversation,
                           make_user) -> None:
    room_id = conversation.room_id
    response = moderate(admin_http, room_id, "block", confirm=False, reason="raid")
    assert CONFIRM_TEMPLATE in [t.name for t in response.templates]
    assert not Room.objects.get(pk=room_id).blocked
    response = moderate(admin_http, room_id, "block", reason="raid")
    assert message_texts(response) == ["Room blocked: nobody can join or send."]
    assert Room.objects.get(pk=room_id).blocked
    resp = matrix.send(conversation.bob, room_id, "m.room.message", {"msgtype": "m.text", "body": "x"},
                       expect=None)
    assert resp.status_code == 403
    carol = make_user("carol")
    assert matrix.join(carol, room_id, expect=None).status_code == 403
    assert 'value="unblock"' in admin_http.get(room_page(room_id)).content.decode()

    response = moderate(admin_http, room_id, "unblock", confirm=False)
    assert message_texts(response) == ["Room unblocked."]
    assert not Room.objects.get(pk=room_id).blocked
    matrix.send_text(conversation.bob, room_id, "back")
    assert audit_actions(room_id) == ["block_room", "unblock_room"]


def test_shutdown_with_a_notice_room(admin_http: Client, matrix: MatrixClient,
                                     conversation: Conversation) -> None:
    room_id, alice, bob = conversation.room_id, conversation.alice, conversation.bob
    response = moderate(admin_http, room_id, "shutdown", confirm=False, reason="illegal content",
                        notice_room_name="About your room", notice_message="It was shut down.")
    assert CONFIRM_TEMPLATE in [t.name for t in response.templates]
    assert membership(room_id, bob.user_id) == "join"
    # A shut down needs a reason.
    (text,) = message_texts(moderate(admin_http, room_id, "shutdown"))
    assert "required" in text

    response = moderate(admin_http, room_id, "shutdown", reason="illegal content",
                        notice_room_name="About your room", notice_message="It was shut down.")
    (text,) = message_texts(response)
    assert text.startswith("Room shut down") and "Notice room: !" in text
    notice_room_id = text.split("Notice room: ")[1].rstrip(".")
    assert membership(room_id, alice.user_id) == "leave" and membership(room_id, bob.user_id) == "leave"
    room = Room.objects.get(pk=room_id)
    assert room.blocked and not room.is_public
    assert not RoomAlias.objects.filter(room_id=room_id).exists()
    assert membership(notice_room_id, bob.user_id) == "invite"
    assert Room.objects.get(pk=notice_room_id).name == "About your room"
    entry = AuditLogEntry.objects.get(action="shutdown_room")
    assert entry.reason == "illegal content" and entry.details["notice_room_id"] == notice_room_id


# -- events and memberships are read-only ---------------------------------------------------------------


def test_events_are_read_only(admin_http: Client, conversation: Conversation) -> None:
    response = admin_http.get(EVENTS, {"q": conversation.room_id})
    assert response.status_code == 200
    assert conversation.spam_id in {e.event_id for e in response.context["cl"].result_list}
    assert response.context["action_form"] is None
    spam = Event.objects.get(event_id=conversation.spam_id)
    change = reverse("admin:events_event_change", args=[spam.pk])
    response = admin_http.get(change)
    assert response.status_code == 200 and "BUY CHEAP STUFF" in response.content.decode()
    assert not response.context["has_change_permission"] and not response.context["has_delete_permission"]
    assert admin_http.post(change, {"type": "m.room.topic"}).status_code == 403
    assert admin_http.get(reverse("admin:events_event_add")).status_code == 403
    delete = reverse("admin:events_event_delete", args=[spam.pk])
    assert admin_http.post(delete, {"post": "yes"}).status_code == 403
    response = admin_http.post(EVENTS, {"action": "delete_selected", "_selected_action": [spam.pk]})
    assert Event.objects.filter(event_id=conversation.spam_id, type="m.room.message").exists()


def test_memberships_are_read_only(admin_http: Client, conversation: Conversation) -> None:
    response = admin_http.get(MEMBERSHIPS, {"q": conversation.bob.user_id})
    assert response.status_code == 200
    (row,) = response.context["cl"].result_list
    assert row.mxid == conversation.bob.user_id and response.context["action_form"] is None
    change = reverse("admin:rooms_membership_change", args=[row.pk])
    assert admin_http.get(change).status_code == 200
    assert admin_http.post(change, {"membership": "ban"}).status_code == 403
    assert admin_http.get(reverse("admin:rooms_membership_add")).status_code == 403
    delete = reverse("admin:rooms_membership_delete", args=[row.pk])
    assert admin_http.post(delete, {"post": "yes"}).status_code == 403
    admin_http.post(MEMBERSHIPS, {"action": "delete_selected", "_selected_action": [row.pk]})
    assert membership(conversation.room_id, conversation.bob.user_id) == "join"


# -- reports --------------------------------------------------------------------------------------------


@pytest.fixture
def spam_report(conversation: Conversation) -> Report:
    alice = User.objects.get(mxid=conversation.alice.user_id)
    return file_report(reporter=alice, kind="event", room_id=conversation.room_id,
                       event_id=conversation.spam_id, reason="spam!", score=-100)


def test_reports_inbox_lists_newest_first_and_filters_by_state(admin_http: Client, conversation: Conversation,
                                                               spam_report: Report) -> None:
    bob = User.objects.get(mxid=conversation.bob.user_id)
    room_report = file_report(reporter=bob, kind="room", room_id=conversation.room_id, reason="bad room")
    response = admin_http.get(REPORTS)
    assert response.status_code == 200
    assert [r.pk for r in response.context["cl"].result_list] == [room_report.pk, spam_report.pk]
    page = response.content.decode()
    for text in ("spam!", "bad room", conversation.alice.user_id, conversation.room_id):
        assert text in page, text
    Report.objects.filter(pk=room_report.pk).update(state="resolved")
    response = admin_http.get(REPORTS, {"state__exact": "open"})
    assert [r.pk for r in response.context["cl"].result_list] == [spam_report.pk]
    assert admin_http.get(reverse("admin:moderation_report_add")).status_code == 403
    assert admin_http.get(reverse("admin:moderation_report_delete", args=[spam_report.pk])).status_code == 403


def test_report_page_shows_the_event_and_its_context(admin_http: Client, conversation: Conversation,
                                                     spam_report: Report) -> None:
    response = admin_http.get(reverse("admin:moderation_report_change", args=[spam_report.pk]))
    assert response.status_code == 200
    assert response.context["event"]["body"] == "BUY CHEAP STUFF"
    assert response.context["event"]["sender"] == conversation.bob.user_id
    around = response.context["around"]
    assert conversation.hello_id in [e["event_id"] for e in around]
    assert [e["is_reported"] for e in around].count(True) == 1
    assert response.context["subject"] == conversation.bob.user_id
    ops = [op for op, _ in response.context["operations"]]
    assert ops == ["redact_event", "kick", "ban", "block"]
    page = response.content.decode()
    assert "BUY CHEAP STUFF" in page and "hello everyone" in page and "spam!" in page


def test_report_state_changes_with_a_note(admin_http: Client, staff: User, spam_report: Report) -> None:
    url = reverse("admin:moderation_report_state", args=[spam_report.pk])
    response = admin_http.post(url, {"state": "in_progress", "note": "looking"}, follow=True)
    assert message_texts(response) == [f"Report #{spam_report.pk} is now in_progress."]
    spam_report.refresh_from_db()
    assert spam_report.state == "in_progress" and spam_report.note == "looking"
    assert spam_report.handled_by == staff
    response = admin_http.post(url, {"state": "resolved", "note": "redacted"}, follow=True)
    assert message_texts(response) == [f"Report #{spam_report.pk} is now resolved."]
    spam_report.refresh_from_db()
    assert spam_report.state == "resolved" and spam_report.note == "redacted"
    response = admin_http.post(url, {"state": "deleted"}, follow=True)
    (text,) = message_texts(response)
    assert "valid choice" in text
    entries = AuditLogEntry.objects.filter(action="report_state_changed", target=str(spam_report.pk))
    assert [e.details["to"] for e in entries.order_by("pk")] == ["in_progress", "resolved"]


def test_report_one_click_actions(admin_http: Client, matrix: MatrixClient, conversation: Conversation,
                                  spam_report: Report) -> None:
    url = reverse("admin:moderation_report_act", args=[spam_report.pk])
    bob = conversation.bob.user_id
    response = admin_http.post(url, {"op": "redact_event"}, follow=True)
    assert message_texts(response) == [f"Redacted {conversation.spam_id}."]
    assert Event.objects.get(event_id=conversation.spam_id).redacted_because is not None
    response = admin_http.post(url, {"op": "kick"}, follow=True)
    assert message_texts(response) == [f"Kicked {bob}."]
    assert membership(conversation.room_id, bob) == "leave"
    response = admin_http.post(url, {"op": "ban"}, follow=True)
    assert membership(conversation.room_id, bob) == "ban"
    response = admin_http.post(url, {"op": "block"}, follow=True)
    assert message_texts(response) == [f"Blocked {conversation.room_id}."]
    assert Room.objects.get(pk=conversation.room_id).blocked
    entry = AuditLogEntry.objects.get(action="kick_member")
    assert entry.reason == f"Report #{spam_report.pk}: spam!"
    # A failing one is an error message.
    response = admin_http.post(url, {"op": "kick"}, follow=True)
    (text,) = message_texts(response)
    assert "failed" in text and "M_FORBIDDEN" in text
    response = admin_http.post(url, {"op": "nuke"}, follow=True)
    assert "does not apply" in message_texts(response)[0]


# -- audit log ------------------------------------------------------------------------------------------


def test_audit_log_is_browsable_and_read_only(admin_http: Client, conversation: Conversation) -> None:
    moderate(admin_http, conversation.room_id, "block", reason="raid")
    moderate(admin_http, conversation.room_id, "set_topic", topic="calm")
    response = admin_http.get(AUDIT)
    assert response.status_code == 200
    actions = [e.action for e in response.context["cl"].result_list]
    assert actions[:2] == ["set_room_topic", "block_room"]
    assert "raid" in response.content.decode()
    assert [e.action for e in admin_http.get(AUDIT, {"action": "block_room"}).context["cl"].result_list] == [
        "block_room"
    ]
    by_actor = admin_http.get(AUDIT, {"actor_name": "@root:test.local"}).context["cl"].result_list
    assert {e.action for e in by_actor} == {"set_room_topic", "block_room"}
    assert list(admin_http.get(AUDIT, {"actor_name": "@nobody:test.local"}).context["cl"].result_list) == []
    today = datetime.now(UTC)
    dated = admin_http.get(AUDIT, {"created_at__year": today.year, "created_at__month": today.month,
                                   "created_at__day": today.day})
    assert len(dated.context["cl"].result_list) == 2
    entry = AuditLogEntry.objects.get(action="block_room")
    change = reverse("admin:moderation_auditlogentry_change", args=[entry.pk])
    response = admin_http.get(change)
    assert response.status_code == 200 and not response.context["has_change_permission"]
    assert admin_http.post(change, {"reason": "nothing"}).status_code == 403
    assert admin_http.get(reverse("admin:moderation_auditlogentry_add")).status_code == 403
    assert admin_http.post(reverse("admin:moderation_auditlogentry_delete", args=[entry.pk]),
                           {"post": "yes"}).status_code == 403
    assert admin_http.get(AUDIT).context["action_form"] is None
    entry.refresh_from_db()
    assert entry.reason == "raid"


# -- users ----------------------------------------------------------------------------------------------


def test_user_page_shows_rooms_devices_and_recent_events(admin_http: Client,
                                                         conversation: Conversation) -> None:
    response = admin_http.get(user_page(conversation.bob.user_id))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Moderated room" in page and conversation.room_id in page
    assert conversation.bob.device_id in page
    assert "BUY CHEAP STUFF" in page
    bob_pk = User.objects.get(mxid=conversation.bob.user_id).pk
    assert reverse("admin:accounts_user_server_ban", args=[bob_pk]) in page
    assert reverse("admin:accounts_user_redact_events", args=[bob_pk]) in page


def test_server_ban_from_the_user_page(admin_http: Client, matrix: MatrixClient,
                                       conversation: Conversation) -> None:
    bob = User.objects.get(mxid=conversation.bob.user_id)
    url = reverse("admin:accounts_user_server_ban", args=[bob.pk])
    response = admin_http.get(url)
    assert response.status_code == 200 and CONFIRM_TEMPLATE in [t.name for t in response.templates]
    assert bob.mxid in response.content.decode()
    bob.refresh_from_db()
    assert bob.is_active
    response = admin_http.post(url, {"reason": "spammer", "confirm": "yes"}, follow=True)
    assert message_texts(response) == [f"{bob.mxid} is banned from the server."]
    bob.refresh_from_db()
    assert not bob.is_active
    assert membership(conversation.room_id, bob.mxid) == "leave"
    matrix.whoami(conversation.bob, expect=401)
    entry = AuditLogEntry.objects.get(action="server_ban_user")
    assert entry.target == bob.mxid and entry.reason == "spammer"


def test_server_ban_action_on_the_user_list(admin_http: Client, staff: User,
                                            conversation: Conversation) -> None:
    bob = User.objects.get(mxid=conversation.bob.user_id)
    data = {"action": "server_ban_users", "_selected_action": [bob.pk, staff.pk], "index": 0}
    response = admin_http.post(USERS, data)
    assert response.status_code == 200 and CONFIRM_TEMPLATE in [t.name for t in response.templates]
    bob.refresh_from_db()
    assert bob.is_active
    response = admin_http.post(USERS, {**data, "reason": "spam wave", "confirm": "yes"}, follow=True)
    texts = message_texts(response)
    assert "Banned 1 user(s) from the server." in texts
    assert any("yourself" in t for t in texts)
    bob.refresh_from_db()
    staff.refresh_from_db()
    assert not bob.is_active and staff.is_active
    assert AuditLogEntry.objects.get(action="server_ban_user").reason == "spam wave"


def test_redact_all_of_a_users_events_server_wide(admin_http: Client, matrix: MatrixClient,
                                                  conversation: Conversation) -> None:
    bob = User.objects.get(mxid=conversation.bob.user_id)
    other = matrix.create_room(conversation.bob, preset="public_chat")
    elsewhere = matrix.send_text(conversation.bob, other, "spam elsewhere")
    url = reverse("admin:accounts_user_redact_events", args=[bob.pk])
    response = admin_http.get(url)
    assert response.status_code == 200 and CONFIRM_TEMPLATE in [t.name for t in response.templates]
    assert Event.objects.get(event_id=elsewhere).redacted_because is None
    response = admin_http.post(url, {"reason": "spam", "confirm": "yes"}, follow=True)
    (text,) = message_texts(response)
    assert text.startswith("Redacted ") and bob.mxid in text
    for event_id in (conversation.spam_id, elsewhere):
        assert Event.objects.get(event_id=event_id).redacted_because is not None
    assert Event.objects.get(event_id=conversation.hello_id).redacted_because is None
    entry = AuditLogEntry.objects.get(action="redact_user_events")
    assert entry.details["room_id"] is None and entry.reason == "spam"


def test_room_and_user_reports_render_with_their_actions(admin_http: Client,
                                                        conversation: Conversation) -> None:
    alice = User.objects.get(mxid=conversation.alice.user_id)
    room_report = file_report(reporter=alice, kind="room", room_id=conversation.room_id, reason="raid room")
    user_report = file_report(reporter=alice, kind="user", target_user_id=conversation.bob.user_id,
                              reason="harasser")
    response = admin_http.get(reverse("admin:moderation_report_change", args=[room_report.pk]))
    assert response.status_code == 200 and response.context["event"] is None
    assert [op for op, _ in response.context["operations"]] == ["block"]
    assert "raid room" in response.content.decode()
    response = admin_http.get(reverse("admin:moderation_report_change", args=[user_report.pk]))
    assert response.status_code == 200 and response.context["operations"] == []
    assert response.context["subject"] == conversation.bob.user_id
    # A kick from a report without a room does not apply.
    url = reverse("admin:moderation_report_act", args=[user_report.pk])
    response = admin_http.post(url, {"op": "kick"}, follow=True)
    assert "does not apply" in message_texts(response)[0]
    assert membership(conversation.room_id, conversation.bob.user_id) == "join"
