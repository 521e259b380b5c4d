"""matrix-nio, a real Matrix client library, against the live homeserver: a conversation.

alice and bob register; alice creates a public room with an alias and invites bob; bob's sync
loop (long-polling /sync with ``since``) receives the invite; bob joins; messages go both ways,
each one arriving in the other's timeline through a /sync that is already waiting when it is
sent; carol joins by the alias; ``joined_members`` lists the three; back-pagination with
/messages from a sync's ``prev_batch`` reaches the room's ``m.room.create`` and stops there.

nio checks every response against its JSON schemas: a mismatch is logged by ``nio.responses``
("Error validating response") and turned into an ErrorResponse; a malformed event is logged by
``nio.events.misc`` ("Error validating event") and becomes a BadEvent. Any of these fails the test.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable

import pytest
from nio import (
    AsyncClient,
    BadEvent,
    ErrorResponse,
    InviteMemberEvent,
    JoinedMembersResponse,
    JoinResponse,
    MessageDirection,
    RegisterResponse,
    RoomCreateEvent,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMemberEvent,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    RoomVisibility,
    SyncResponse,
    UnknownBadEvent,
)

from tests.e2e.nio_harness import run_nio_scenario
from tests.live import LiveServer

pytestmark = pytest.mark.e2e

SERVER = "localhost"
PASSWORD = "correct horse battery staple"
LONG_POLL_MS = 5_000  # each /sync long-poll; the waits below are bounded by STEP_DEADLINE_S
STEP_DEADLINE_S = 20.0


def ok(response, expected_type):
    """The response, after checking it is ``expected_type`` and not an ErrorResponse."""
    assert not isinstance(response, ErrorResponse), f"nio error response: {response!r}"
    assert isinstance(response, expected_type), f"expected {expected_type.__name__}, got {response!r}"
    return response


def assert_no_bad_events(response: SyncResponse | RoomMessagesResponse) -> None:
    """Every event nio parsed passed its schema (a failing one becomes a BadEvent)."""
    if isinstance(response, RoomMessagesResponse):
        events = list(response.chunk)
    else:
        events = []
        for info in response.rooms.join.values():
            events += info.timeline.events + info.state
        for info in response.rooms.invite.values():
            events += info.invite_state
        for info in response.rooms.leave.values():
            events += info.timeline.events + info.state
    bad = [e for e in events if isinstance(e, (BadEvent, UnknownBadEvent))]
    assert not bad, f"events nio could not validate: {bad!r}"


async def sync_until(client: AsyncClient, done: Callable[[SyncResponse], bool], what: str) -> SyncResponse:
    """Run the client's sync loop (long-polls with ``since``) until one response satisfies ``done``."""
    deadline = time.monotonic() + STEP_DEADLINE_S
    while time.monotonic() < deadline:
        response = ok(await client.sync(timeout=LONG_POLL_MS, since=client.next_batch), SyncResponse)
        assert_no_bad_events(response)
        if done(response):
            return response
    raise AssertionError(f"{client.user_id}: {what} did not arrive through /sync within {STEP_DEADLINE_S}s")


def timeline_text(response: SyncResponse, room_id: str, sender: str, body: str) -> RoomMessageText | None:
    """The m.room.message ``body`` from ``sender`` in the room's timeline of this sync response."""
    room = response.rooms.join.get(room_id)
    if room is None:
        return None
    matches = (
        e
        for e in room.timeline.events
        if isinstance(e, RoomMessageText) and e.sender == sender and e.body == body
    )
    return next(matches, None)


async def register(url: str, name: str) -> AsyncClient:
    client = AsyncClient(url)
    registered = ok(await client.register(name, PASSWORD, device_name=f"{name}'s nio"), RegisterResponse)
    assert registered.user_id == f"@{name}:{SERVER}"
    assert client.access_token == registered.access_token and client.user_id == registered.user_id
    return client


async def send_text(client: AsyncClient, room_id: str, body: str) -> str:
    sent = ok(
        await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body}),
        RoomSendResponse,
    )
    assert sent.event_id.startswith("$") and sent.room_id == room_id
    return sent.event_id


async def send_while_peer_waits(
    sender: AsyncClient, receiver: AsyncClient, room_id: str, body: str
) -> RoomMessageText:
    """``receiver`` is already long-polling /sync when ``sender`` sends: the send must wake it.

    The message is recognised by sender and body (unique in this test), not by the event ID the
    send returns: the woken /sync may well answer before the PUT's response reaches us.
    """

    def arrived(response: SyncResponse) -> bool:
        return timeline_text(response, room_id, sender.user_id, body) is not None

    waiting = asyncio.create_task(sync_until(receiver, arrived, f"message {body!r}"))
    await asyncio.sleep(0.3)  # let the long-poll reach the server and start waiting
    started = time.monotonic()
    event_id = await send_text(sender, room_id, body)
    response = await waiting
    latency = time.monotonic() - started
    assert latency < LONG_POLL_MS / 1000, f"the waiting /sync took {latency:.1f}s to see the message"
    event = timeline_text(response, room_id, sender.user_id, body)
    assert event is not None and event.event_id == event_id, (event, event_id)
    # And the client's own room model has it too.
    assert receiver.rooms[room_id].joined_count >= 2
    return event


async def _conversation(url: str) -> None:
    suffix = secrets.token_hex(3)
    alice = await register(url, f"alice{suffix}")
    bob = await register(url, f"bob{suffix}")
    carol = await register(url, f"carol{suffix}")
    try:
        # Every client starts with an initial sync, as sync_forever would.
        for client in (alice, bob, carol):
            initial = ok(await client.sync(timeout=0), SyncResponse)
            assert initial.next_batch and not initial.rooms.join and not initial.rooms.invite

        # alice creates a public room with an alias and invites bob.
        alias_local = f"conversation{suffix}"
        alias = f"#{alias_local}:{SERVER}"
        created = ok(
            await alice.room_create(
                visibility=RoomVisibility.public, alias=alias_local, name="A conversation", topic="e2e"
            ),
            RoomCreateResponse,
        )
        room_id = created.room_id
        assert room_id.startswith("!")

        def alice_in_room(response: SyncResponse) -> bool:
            return room_id in response.rooms.join

        await sync_until(alice, alice_in_room, "the new room")
        room = alice.rooms[room_id]
        assert room.name == "A conversation" and room.topic == "e2e"
        assert room.canonical_alias == alias
        assert room.join_rule == "public"

        # bob is already waiting in /sync when the invite is made.
        def invited(response: SyncResponse) -> bool:
            return room_id in response.rooms.invite

        bob_waits = asyncio.create_task(sync_until(bob, invited, "the invite"))
        await asyncio.sleep(0.3)
        ok(await alice.room_invite(room_id, bob.user_id), RoomInviteResponse)
        invite_sync = await bob_waits
        invite_state = invite_sync.rooms.invite[room_id].invite_state
        invite_member = [
            e for e in invite_state if isinstance(e, InviteMemberEvent) and e.state_key == bob.user_id
        ]
        assert invite_member and invite_member[0].membership == "invite", invite_state
        assert invite_member[0].sender == alice.user_id
        assert room_id in bob.invited_rooms
        assert bob.invited_rooms[room_id].name == "A conversation"

        # bob accepts the invite.
        joined = ok(await bob.join(room_id), JoinResponse)
        assert joined.room_id == room_id

        def bob_joined(response: SyncResponse) -> bool:
            return room_id in response.rooms.join

        join_sync = await sync_until(bob, bob_joined, "the joined room")
        assert room_id not in bob.invited_rooms and room_id in bob.rooms
        bob_timeline = join_sync.rooms.join[room_id].timeline
        assert any(
            isinstance(e, RoomMemberEvent) and e.state_key == bob.user_id and e.membership == "join"
            for e in bob_timeline.events
        ), bob_timeline.events
        assert bob.rooms[room_id].name == "A conversation"
        assert set(bob.rooms[room_id].users) == {alice.user_id, bob.user_id}

        # alice sees bob's join.
        def alice_sees_bob(response: SyncResponse) -> bool:
            room = response.rooms.join.get(room_id)
            return room is not None and any(
                isinstance(e, RoomMemberEvent) and e.state_key == bob.user_id and e.membership == "join"
                for e in room.timeline.events
            )

        await sync_until(alice, alice_sees_bob, "bob's join")

        # Messages in both directions, each while the other side is long-polling.
        hello = await send_while_peer_waits(alice, bob, room_id, "Hello bob!")
        reply = await send_while_peer_waits(bob, alice, room_id, "Hi alice, good to see you.")
        again = await send_while_peer_waits(alice, bob, room_id, "Shall we invite carol?")
        assert hello.server_timestamp <= reply.server_timestamp <= again.server_timestamp

        # carol joins the public room by its alias.
        carol_join = ok(await carol.join(alias), JoinResponse)
        assert carol_join.room_id == room_id

        def alice_sees_carol(response: SyncResponse) -> bool:
            room = response.rooms.join.get(room_id)
            return room is not None and any(
                isinstance(e, RoomMemberEvent) and e.state_key == carol.user_id and e.membership == "join"
                for e in room.timeline.events
            )

        await sync_until(alice, alice_sees_carol, "carol's join")
        members = ok(await alice.joined_members(room_id), JoinedMembersResponse)
        assert {m.user_id for m in members.members} == {alice.user_id, bob.user_id, carol.user_id}
        carol_sent = await send_text(carol, room_id, "Hello both!")

        # carol's sync: the room with a limited timeline; page back from its prev_batch.
        carol_sync = await sync_until(carol, lambda r: room_id in r.rooms.join, "the room carol joined")
        carol_room = carol_sync.rooms.join[room_id]
        timeline_ids = [e.event_id for e in carol_room.timeline.events]
        assert carol_sent in timeline_ids, timeline_ids
        assert carol_room.timeline.limited, "the room has more history than one timeline of 10"
        token = carol_room.timeline.prev_batch
        assert token, "no prev_batch in carol's sync"

        paged = []
        pages = 0
        while True:
            pages += 1
            assert pages <= 50, "back-pagination did not stop"
            page = ok(
                await carol.room_messages(room_id, start=token, direction=MessageDirection.back, limit=4),
                RoomMessagesResponse,
            )
            assert_no_bad_events(page)
            assert page.start == token
            paged += page.chunk
            if page.end is None or not page.chunk:
                break
            assert page.end != token, "pagination token did not move"
            token = page.end
        assert paged, "back-pagination returned nothing"
        assert isinstance(paged[-1], RoomCreateEvent), f"last paged event: {paged[-1]!r}"
        assert paged[-1].sender == alice.user_id
        assert not any(isinstance(e, RoomCreateEvent) for e in paged[:-1])
        # The whole history: carol's timeline plus what she paged is the room from its creation on.
        history = list(reversed(paged)) + list(carol_room.timeline.events)
        history_ids = [e.event_id for e in history]
        assert len(history_ids) == len(set(history_ids)), "an event was returned twice"
        bodies = [e.body for e in history if isinstance(e, RoomMessageText)]
        conversation = ["Hello bob!", "Hi alice, good to see you.", "Shall we invite carol?", "Hello both!"]
        assert bodies == conversation, bodies
        # ... and once past the create event, paging back again gives nothing more.
        if page.end is not None:
            after = ok(
                await carol.room_messages(room_id, start=page.end, direction=MessageDirection.back, limit=4),
                RoomMessagesResponse,
            )
            assert after.chunk == [] and after.end is None, after
    finally:
        for client in (alice, bob, carol):
            await client.close()


def test_nio_two_person_conversation(
    live_matrix_server: LiveServer, live_server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    run_nio_scenario(_conversation(live_server_url), server=live_matrix_server, caplog=caplog)
