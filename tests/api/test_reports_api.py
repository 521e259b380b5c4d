"""Reporting content (spec report_content.yaml): POST /rooms/{roomId}/report/{eventId} (v3 and r0),
POST /rooms/{roomId}/report and POST /users/{userId}/report (v3 only). Each report lands in the
admin's inbox as an open Report, with an audit entry."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from moderation.models import AuditLogEntry, Report
from tests.matrix_client import MatrixClient, TestUser, assert_matrix_error, q
from tests.rooms_helpers import joined_room_with

pytestmark = pytest.mark.django_db


def report_event(matrix: MatrixClient, user: TestUser | None, room_id: str, event_id: str,
                 body: object = None, expect: int | None = 200):  # type: ignore[no-untyped-def]
    return matrix.post(f"rooms/{q(room_id)}/report/{q(event_id)}", body if body is not None else {},
                       token=user, expect=expect)


def test_report_an_event(any_prefix_client: MatrixClient) -> None:
    matrix = any_prefix_client
    alice, bob = matrix.register("alice"), matrix.register("bob")
    room_id = joined_room_with(matrix, alice, bob)
    event_id = matrix.send_text(bob, room_id, "offensive")
    resp = report_event(matrix, alice, room_id, event_id, {"reason": "this makes me sad", "score": -100})
    assert resp.json() == {}
    report = Report.objects.get()
    assert (report.kind, report.room_id, report.event_id, report.target_user_id, report.reason, report.score,
            report.state, report.reporter.mxid) == (
        "event", room_id, event_id, bob.user_id, "this makes me sad", -100, "open", alice.user_id
    )
    entry = AuditLogEntry.objects.get()
    assert (entry.action, entry.actor.mxid, entry.target_type, entry.target) == (
        "report_filed", alice.user_id, "event", event_id
    )
    # The reason is optional for an event report, and score too (removed from the spec in v1.18).
    report_event(matrix, alice, room_id, event_id, {})
    assert Report.objects.filter(reason="", score=None).count() == 1


def test_event_report_errors(any_prefix_client: MatrixClient) -> None:
    matrix = any_prefix_client
    alice, bob, carol = (matrix.register(n) for n in ("alice", "bob", "carol"))
    room_id = joined_room_with(matrix, alice, bob)
    event_id = matrix.send_text(bob, room_id, "hello")
    # Not joined to the room, unknown event, unknown room: all 404 M_NOT_FOUND.
    assert_matrix_error(report_event(matrix, carol, room_id, event_id, expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(report_event(matrix, alice, room_id, "$unknown", expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(report_event(matrix, alice, "!nope:test.local", event_id, expect=None), 404, "M_NOT_FOUND")
    other_room = matrix.create_room(alice)
    assert_matrix_error(report_event(matrix, alice, other_room, event_id, expect=None), 404, "M_NOT_FOUND")
    # A redacted event is gone as far as reports go.
    matrix.redact(bob, room_id, event_id)
    assert_matrix_error(report_event(matrix, alice, room_id, event_id, expect=None), 404, "M_NOT_FOUND")
    # score out of range or not an integer: 400 M_INVALID_PARAM; a reason that isn't a string: M_BAD_JSON.
    live = matrix.send_text(bob, room_id, "again")
    for score in (1, -101, "bad", 1.5, True):
        resp = report_event(matrix, alice, room_id, live, {"reason": "x", "score": score}, expect=None)
        assert_matrix_error(resp, 400, "M_INVALID_PARAM")
    assert_matrix_error(report_event(matrix, alice, room_id, live, {"reason": 5}, expect=None), 400, "M_BAD_JSON")
    assert_matrix_error(report_event(matrix, alice, room_id, live, [], expect=None), 400, "M_BAD_JSON")
    assert_matrix_error(report_event(matrix, None, room_id, live, expect=None), 401, "M_MISSING_TOKEN")
    assert not Report.objects.exists() and not AuditLogEntry.objects.exists()


def test_an_event_the_reporter_could_not_see_is_not_found(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(alice, preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}
    ])
    before_bob = matrix.send_text(alice, room_id, "before bob joined")
    matrix.join(bob, room_id)
    assert_matrix_error(report_event(matrix, bob, room_id, before_bob, expect=None), 404, "M_NOT_FOUND")
    report_event(matrix, bob, room_id, matrix.send_text(alice, room_id, "after"))


def test_report_a_room(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, preset="public_chat")
    # The reporter need not be joined.
    assert matrix.post(f"rooms/{q(room_id)}/report", {"reason": "spam room"}, token=bob).json() == {}
    report = Report.objects.get()
    assert (report.kind, report.room_id, report.event_id, report.reason, report.reporter.mxid) == (
        "room", room_id, "", "spam room", bob.user_id
    )
    matrix.post(f"rooms/{q(room_id)}/report", {"reason": ""}, token=bob)  # "May be blank"
    assert_matrix_error(matrix.post(f"rooms/{q(room_id)}/report", {}, token=bob, expect=None), 400, "M_MISSING_PARAM")
    assert_matrix_error(
        matrix.post(f"rooms/{q('!nope:test.local')}/report", {"reason": "x"}, token=bob, expect=None),
        404, "M_NOT_FOUND",
    )
    assert Report.objects.count() == 2
    # A v1.13 endpoint: not on the legacy r0 prefix.
    r0 = MatrixClient("r0")
    assert_matrix_error(r0.post(f"rooms/{q(room_id)}/report", {"reason": "x"}, token=bob, expect=None),
                        404, "M_UNRECOGNIZED")


def test_report_a_user(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    assert matrix.post(f"users/{q(bob.user_id)}/report", {"reason": "harassment"}, token=alice).json() == {}
    report = Report.objects.get()
    assert (report.kind, report.target_user_id, report.room_id, report.reason) == (
        "user", bob.user_id, "", "harassment"
    )
    assert AuditLogEntry.objects.get().target_type == "user"
    for user_id, status, errcode in (
        ("@nobody:test.local", 404, "M_NOT_FOUND"),
        ("@bob:elsewhere.example", 404, "M_NOT_FOUND"),
        ("not-a-user-id", 400, "M_INVALID_PARAM"),
    ):
        resp = matrix.post(f"users/{q(user_id)}/report", {"reason": "x"}, token=alice, expect=None)
        assert_matrix_error(resp, status, errcode)
    assert_matrix_error(matrix.post(f"users/{q(bob.user_id)}/report", {}, token=alice, expect=None),
                        400, "M_MISSING_PARAM")
    r0 = MatrixClient("r0")
    assert_matrix_error(r0.post(f"users/{q(bob.user_id)}/report", {"reason": "x"}, token=alice, expect=None),
                        404, "M_UNRECOGNIZED")
    assert Report.objects.count() == 1


def test_reports_are_rate_limited_per_user(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, settings
) -> None:
    cache.clear()
    settings.MATRIX = {**settings.MATRIX, "RATE_LIMIT": True,
                       "RATES": {**settings.MATRIX["RATES"], "report": "2/min"}}
    path = f"users/{q(bob.user_id)}/report"
    matrix.post(path, {"reason": "1"}, token=alice)
    matrix.post(path, {"reason": "2"}, token=alice)
    body = assert_matrix_error(matrix.post(path, {"reason": "3"}, token=alice, expect=None), 429, "M_LIMIT_EXCEEDED")
    assert body["retry_after_ms"] > 0
    matrix.post(f"users/{q(alice.user_id)}/report", {"reason": "bob's own budget"}, token=bob)
    assert Report.objects.count() == 3
    cache.clear()


def test_wrong_method_is_unrecognized(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    resp = matrix.get(f"rooms/{q(room_id)}/report", token=alice, expect=None)
    assert_matrix_error(resp, 405, "M_UNRECOGNIZED")
