"""Unread notification counts in /sync (push.md "Receiving notifications", "Marking notifications as
read"; receipts.md "Private read receipts", "Threaded read receipts").

Notifications are decided by the recipient's push rules when the event is written (one row per
notified user, ``push.models.PushAction``); /sync counts the rows after the user's read receipts in
one grouped query for the joined rooms of its answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from push.models import PushAction
from tests.matrix_client import MatrixClient, q
from tests.rooms_helpers import joined_room_with, set_power_levels
from tests.sync_helpers import sync

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db

THREADED = {"room": {"timeline": {"unread_thread_notifications": True}}}


def counts(notifications: int, highlights: int = 0) -> dict[str, int]:
    return {"notification_count": notifications, "highlight_count": highlights}


def unread(body: dict[str, Any], room_id: str) -> dict[str, int]:
    return body["rooms"]["join"][room_id]["unread_notifications"]


def thread_unread(body: dict[str, Any], room_id: str) -> dict[str, dict[str, int]]:
    return body["rooms"]["join"][room_id]["unread_thread_notifications"]


def receipt(
    matrix: MatrixClient,
    user: TestUser,
    room_id: str,
    event_id: str,
    receipt_type: str = "m.read",
    **body: Any,
) -> None:
    matrix.post(f"rooms/{q(room_id)}/receipt/{q(receipt_type)}/{q(event_id)}", body, token=user)


def thread_reply(matrix: MatrixClient, user: TestUser, room_id: str, root: str, text: str) -> str:
    content = {
        "msgtype": "m.text",
        "body": text,
        "m.relates_to": {"rel_type": "m.thread", "event_id": root},
    }
    return matrix.send(user, room_id, "m.room.message", content)["event_id"]


@pytest.fixture
def carol(make_user) -> TestUser:
    return make_user("carol")


@pytest.fixture
def group(matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser) -> str:
    """Three members, so the one-to-one rules don't apply."""
    return joined_room_with(matrix, alice, bob, carol)


# -- what counts -----------------------------------------------------------------------------------


def test_messages_of_others_count_in_the_same_sync_as_the_event(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, group: str
) -> None:
    since = sync(matrix, bob)["next_batch"]
    alice_since = sync(matrix, alice)["next_batch"]
    matrix.send_text(alice, group, "one")
    matrix.send_text(alice, group, "two")
    body = sync(matrix, bob, since=since)
    assert unread(body, group) == counts(2)
    # The sender is never notified of their own events.
    assert unread(sync(matrix, alice, since=alice_since), group) == counts(0)
    assert unread(sync(matrix, bob), group) == counts(2)  # an initial sync too


def test_rooms_without_news_have_zero_counts(matrix: MatrixClient, bob: TestUser, group: str) -> None:
    assert unread(sync(matrix, bob), group) == counts(0)


def test_notices_member_events_edits_and_reactions_do_not_count(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, group: str
) -> None:
    first = matrix.send_text(alice, group, "hello")
    receipt(matrix, bob, group, first)
    matrix.send(alice, group, "m.room.message", {"msgtype": "m.notice", "body": "bot says"})
    matrix.send(
        alice,
        group,
        "m.room.message",
        {"msgtype": "m.text", "body": "* hi", "m.new_content": {"msgtype": "m.text", "body": "hi"},
         "m.relates_to": {"rel_type": "m.replace", "event_id": first}},
    )
    matrix.send(alice, group, "m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": first,
                                                              "key": "👍"}})
    matrix.send_state(alice, group, "m.room.topic", {"topic": "quiet"})
    assert unread(sync(matrix, bob), group) == counts(0)


def test_mentions_highlight(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, group: str
) -> None:
    matrix.send(alice, group, "m.room.message", {"msgtype": "m.text", "body": "bob!",
                                                 "m.mentions": {"user_ids": [bob.user_id]}})
    assert unread(sync(matrix, bob), group) == counts(1, 1)
    assert unread(sync(matrix, carol), group) == counts(1, 0)


def test_room_mentions_highlight_only_from_senders_with_the_notification_power(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, group: str
) -> None:
    room_mention = {"msgtype": "m.text", "body": "@room", "m.mentions": {"room": True}}
    matrix.send(alice, group, "m.room.message", room_mention)  # alice: 100 >= notifications.room 50
    assert unread(sync(matrix, bob), group) == counts(1, 1)
    matrix.send(carol, group, "m.room.message", room_mention)  # carol: 0
    assert unread(sync(matrix, bob), group) == counts(2, 1)
    set_power_levels(matrix, alice, group, notifications={"room": 0})
    matrix.send(carol, group, "m.room.message", room_mention)
    assert unread(sync(matrix, bob), group) == counts(3, 2)


def test_one_to_one_rooms_and_encrypted_events_count(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.send_text(alice, room_id, "just us")
    matrix.send(alice, room_id, "m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"})
    assert unread(sync(matrix, bob), room_id) == counts(2)
    actions = list(PushAction.objects.order_by("stream_pos").values_list("actions", flat=True))
    assert actions == [
        ["notify", {"set_tweak": "sound", "value": "default"}],  # .m.rule.room_one_to_one
        ["notify", {"set_tweak": "sound", "value": "default"}],  # .m.rule.encrypted_room_one_to_one
    ]


def test_the_users_own_rules_decide(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, group: str
) -> None:
    matrix.put("pushrules/global/underride/.m.rule.message/enabled", {"enabled": False}, token=bob)
    matrix.put(
        "pushrules/global/content/cake",
        {"pattern": "cake", "actions": ["notify", {"set_tweak": "highlight"}]},
        token=carol,
    )
    matrix.send_text(alice, group, "plain words")
    matrix.send_text(alice, group, "there is cake")
    assert unread(sync(matrix, bob), group) == counts(0)
    assert unread(sync(matrix, carol), group) == counts(2, 1)
    matrix.put("pushrules/global/override/.m.rule.master/enabled", {"enabled": True}, token=carol)
    matrix.send_text(alice, group, "more cake")
    assert unread(sync(matrix, carol), group) == counts(2, 1)  # muted: nothing new
    matrix.put(f"pushrules/global/room/{q(group)}", {"actions": []}, token=bob)
    matrix.put("pushrules/global/underride/.m.rule.message/enabled", {"enabled": True}, token=bob)
    matrix.send_text(alice, group, "room rule wins")
    assert unread(sync(matrix, bob), group) == counts(0)


def test_display_name_rules_use_the_members_name_in_the_room(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, group: str
) -> None:
    matrix.put(f"profile/{q(bob.user_id)}/displayname", {"displayname": "Bobby"}, token=bob)
    matrix.put(
        "pushrules/global/override/my.name",
        {
            "conditions": [{"kind": "contains_display_name"}],
            "actions": ["notify", {"set_tweak": "highlight"}],
        },
        token=bob,
    )
    matrix.send_text(alice, group, "hey bobby, look")
    assert unread(sync(matrix, bob), group) == counts(1, 1)


def test_ignored_senders_do_not_count(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, group: str
) -> None:
    matrix.put(f"user/{q(bob.user_id)}/account_data/m.ignored_user_list",
               {"ignored_users": {alice.user_id: {}}}, token=bob)
    matrix.send_text(alice, group, "unseen")
    assert unread(sync(matrix, bob), group) == counts(0)


# -- receipts ----------------------------------------------------------------------------------------


def test_a_read_receipt_clears_up_to_its_event_and_the_room_shows_the_lower_count(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, group: str
) -> None:
    first = matrix.send_text(alice, group, "one")
    matrix.send_text(alice, group, "two")
    last = matrix.send_text(alice, group, "three")
    since = sync(matrix, bob)["next_batch"]
    receipt(matrix, bob, group, first)
    body = sync(matrix, bob, since=since)
    assert unread(body, group) == counts(2)
    receipt(matrix, bob, group, last)
    body = sync(matrix, bob, since=body["next_batch"])
    assert body["rooms"]["join"][group]["timeline"]["events"] == []  # here for the receipt alone
    assert unread(body, group) == counts(0)


def test_the_further_of_public_and_private_receipts_counts(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, group: str
) -> None:
    a, b, c, d = (matrix.send_text(alice, group, text) for text in "ABCD")
    receipt(matrix, bob, group, c)
    receipt(matrix, bob, group, a, "m.read.private")
    assert unread(sync(matrix, bob), group) == counts(1)  # read up to C
    receipt(matrix, bob, group, b, "m.read.private")
    assert unread(sync(matrix, bob), group) == counts(1)
    since = sync(matrix, bob)["next_batch"]
    receipt(matrix, bob, group, d, "m.read.private")
    assert unread(sync(matrix, bob, since=since), group) == counts(0)


def test_threads_are_counted_apart_when_the_filter_asks(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, group: str
) -> None:
    root = matrix.send_text(alice, group, "root")
    first_reply = thread_reply(matrix, alice, group, root, "in thread 1")
    thread_reply(matrix, alice, group, root, "in thread 2")
    main = matrix.send_text(alice, group, "main again")
    # A reaction to a thread reply is in the thread; made to notify, it counts there.
    matrix.put("pushrules/global/override/.m.rule.reaction/actions", {"actions": ["notify"]}, token=bob)
    matrix.send(alice, group, "m.reaction", {"m.relates_to": {"rel_type": "m.annotation",
                                                              "event_id": first_reply, "key": "x"}})

    assert unread(sync(matrix, bob), group) == counts(5)  # not asked: everything together
    body = sync(matrix, bob, filter=THREADED)
    assert unread(body, group) == counts(2)  # the root and "main again"
    assert thread_unread(body, group) == {root: counts(3)}

    receipt(matrix, bob, group, first_reply, thread_id=root)
    body = sync(matrix, bob, filter=THREADED)
    assert unread(body, group) == counts(2) and thread_unread(body, group) == {root: counts(2)}
    receipt(matrix, bob, group, main, thread_id="main")
    body = sync(matrix, bob, filter=THREADED)
    assert unread(body, group) == counts(0) and thread_unread(body, group) == {root: counts(2)}
    assert unread(sync(matrix, bob), group) == counts(2)

    receipt(matrix, bob, group, main)  # unthreaded: everything up to it, threads included
    body = sync(matrix, bob, filter=THREADED)
    assert unread(body, group) == counts(0) and thread_unread(body, group) == {root: counts(1)}


def test_notifications_before_the_user_joined_do_not_count(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, group: str
) -> None:
    matrix.send_text(alice, group, "while bob is here")
    matrix.leave(bob, group)
    matrix.send_text(alice, group, "bob is away")
    dave = matrix.register("dave")
    room_id = matrix.create_room(alice, preset="private_chat")
    matrix.invite(alice, room_id, dave.user_id)  # .m.rule.invite_for_me: a notification for dave
    assert PushAction.objects.filter(user__mxid=dave.user_id, room_id=room_id).count() == 1
    matrix.join(dave, room_id)
    matrix.join(bob, group)
    matrix.send_text(carol, group, "welcome back")
    assert unread(sync(matrix, bob), group) == counts(1)
    assert unread(sync(matrix, dave), room_id) == counts(0)


# -- cost ----------------------------------------------------------------------------------------------


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the /sync view's reads of the response (a request may read more than once)."""
    from sync import views

    calls: list[int] = []
    real = views.build_sync_response

    def counted(**kw: Any) -> Any:
        calls.append(1)
        return real(**kw)

    monkeypatch.setattr(views, "build_sync_response", counted)
    return calls


def _count_queries(
    matrix: MatrixClient, user: TestUser, builds: list[int], **kw: Any
) -> tuple[dict[str, Any], int]:
    """The answer, and the count queries made per read of the response."""
    builds.clear()
    with CaptureQueriesContext(connection) as ctx:
        body = sync(matrix, user, **kw)
    on_push = [x["sql"] for x in ctx.captured_queries if "push_pushaction" in x["sql"]]
    assert len(on_push) % len(builds) == 0
    return body, len(on_push) // len(builds)


@pytest.mark.parametrize("n_rooms", [1, 20])
def test_counts_cost_one_grouped_query_whatever_the_number_of_rooms(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, n_rooms: int, builds: list[int]
) -> None:
    rooms = [joined_room_with(matrix, alice, bob, carol) for _ in range(n_rooms)]
    for room_id in rooms:
        matrix.send_text(alice, room_id, "hi")
        matrix.send(carol, room_id, "m.room.message", {"msgtype": "m.text", "body": "bob?",
                                                        "m.mentions": {"user_ids": [bob.user_id]}})
    matrix.whoami(bob)
    body, on_push = _count_queries(matrix, bob, builds, filter=THREADED)
    assert on_push == 1
    assert all(unread(body, room_id) == counts(2, 1) for room_id in rooms)
    receipt(matrix, bob, rooms[0], matrix.send_text(carol, rooms[0], "read me"))
    body, on_push = _count_queries(matrix, bob, builds, since=body["next_batch"])
    assert on_push == 1 and set(body["rooms"]["join"]) == {rooms[0]}
    assert unread(body, rooms[0]) == counts(0)
    body, on_push = _count_queries(matrix, bob, builds, since=body["next_batch"])
    assert on_push == 0 and body["rooms"]["join"] == {}  # an empty sync: no count query


def test_rows_are_written_with_the_event_only_for_notified_members(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, group: str
) -> None:
    content = {"msgtype": "m.text", "body": "carol", "m.mentions": {"user_ids": [carol.user_id]}}
    event_id = matrix.send(alice, group, "m.room.message", content)["event_id"]
    rows = {
        r.user.mxid: r
        for r in PushAction.objects.select_related("user", "event").filter(event__event_id=event_id)
    }
    assert set(rows) == {bob.user_id, carol.user_id}
    assert rows[carol.user_id].highlight and not rows[bob.user_id].highlight
    assert all(r.stream_pos == r.event.stream_pos and r.thread_id == "main" and r.room_id == group
               for r in rows.values())


def test_many_recipients_are_inserted_in_batches(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, make_user, group: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from push import actions

    others = [make_user() for _ in range(3)]
    for user in others:
        matrix.join(user, group)
    monkeypatch.setattr(actions, "INSERT_BATCH_ROWS", 2)  # 5 recipients: 3 statements
    matrix.send_text(alice, group, "to everyone")
    for user in (bob, carol, *others):
        assert unread(sync(matrix, user), group) == counts(1)
