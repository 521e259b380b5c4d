"""matrix-nio against the live homeserver: presence.

alice and bob share a room; bob long-polls /sync (with ``set_presence=offline``, so only alice's
presence moves) while alice sets her presence and status message with PUT /presence: bob's waiting
sync wakes up with nio ``PresenceEvent``s carrying both; ``get_presence`` answers the same; a user who
shares no room with alice is refused (403), as Synapse does. nio validates every response against its
schemas: a mismatch becomes an ErrorResponse or a logged "Error validating" and fails the test.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

import pytest
from nio import (
    AsyncClient,
    JoinResponse,
    PresenceEvent,
    PresenceGetError,
    PresenceGetResponse,
    PresenceSetResponse,
    RoomCreateResponse,
    SyncResponse,
)

from tests.e2e.nio_harness import nio_validation_problems, run_nio_scenario
from tests.e2e.test_nio_conversation import LONG_POLL_MS, STEP_DEADLINE_S, ok, register
from tests.live import LiveServer

pytestmark = pytest.mark.e2e


async def presence_through_sync(
    client: AsyncClient, user_id: str, want: str, status: str | None
) -> PresenceEvent:
    """Long-poll (not marking ``client`` online) until a PresenceEvent of ``user_id`` says ``want``."""
    deadline = time.monotonic() + STEP_DEADLINE_S
    while time.monotonic() < deadline:
        response = ok(
            await client.sync(timeout=LONG_POLL_MS, since=client.next_batch, set_presence="offline"),
            SyncResponse,
        )
        for event in response.presence_events:
            assert isinstance(event, PresenceEvent), event
            if event.user_id == user_id and event.presence == want and event.status_msg == status:
                return event
    raise AssertionError(
        f"{client.user_id}: {user_id} {want}/{status} did not arrive within {STEP_DEADLINE_S}s"
    )


async def _presence(url: str, validation_problems: Callable[[], list[str]]) -> None:
    suffix = secrets.token_hex(3)
    alice = await register(url, f"alice{suffix}")
    bob = await register(url, f"bob{suffix}")
    carol = await register(url, f"carol{suffix}")
    try:
        room_id = ok(await alice.room_create(invite=[bob.user_id]), RoomCreateResponse).room_id
        ok(await bob.join(room_id), JoinResponse)
        for client in (alice, bob):
            ok(await client.sync(timeout=0, set_presence="offline"), SyncResponse)

        # bob waits in /sync while alice sets her presence.
        waiting = asyncio.create_task(presence_through_sync(bob, alice.user_id, "online", "Making cupcakes"))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        ok(await alice.set_presence("online", "Making cupcakes"), PresenceSetResponse)
        event = await waiting
        assert time.monotonic() - started < LONG_POLL_MS / 1000, "the waiting /sync was not woken"
        assert event.currently_active is True
        assert event.last_active_ago is not None and 0 <= event.last_active_ago < 10_000

        got = ok(await bob.get_presence(alice.user_id), PresenceGetResponse)
        assert (got.presence, got.status_msg, got.currently_active) == ("online", "Making cupcakes", True)

        # A change of state and message, and clearing the message.
        ok(await alice.set_presence("unavailable", "in a meeting"), PresenceSetResponse)
        away = await presence_through_sync(bob, alice.user_id, "unavailable", "in a meeting")
        assert away.currently_active is None  # only sent while online
        ok(await alice.set_presence("online"), PresenceSetResponse)
        await presence_through_sync(bob, alice.user_id, "online", None)
        got = ok(await alice.get_presence(alice.user_id), PresenceGetResponse)
        assert got.presence == "online" and got.status_msg is None

        # No shared room: not allowed to see it. (nio first reads the error body as a presence and logs
        # that it is not one, then returns the error: only from here on is that log expected.)
        assert not validation_problems(), validation_problems()
        refused = await carol.get_presence(alice.user_id)
        assert isinstance(refused, PresenceGetError) and refused.status_code == "M_FORBIDDEN", refused
    finally:
        for client in (alice, bob, carol):
            await client.close()


def test_nio_presence(
    live_matrix_server: LiveServer, live_server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="nio")
    run_nio_scenario(_presence(live_server_url, lambda: nio_validation_problems(caplog)), server=live_matrix_server, caplog=caplog, tolerated=("'presence' is a required property",))
