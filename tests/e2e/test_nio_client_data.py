"""matrix-nio against the live homeserver: room tags and account data reach the user's other device.

Device 1 of alice tags a room and sets global and room account data; device 2 (a second login of
alice, long-polling /sync) receives them as nio events (``TagEvent`` in the room's account data,
``UnknownAccountDataEvent`` for custom types) and nio's room model carries the tags; removing the tag
reaches device 2 the same way. nio 0.26 has no tag or account-data call, so those requests go through
its ``_send`` with its own path builder (``Api._build_path``): the wire format is still nio's.

nio checks every response against its JSON schemas: a mismatch is logged ("Error validating ...")
and fails the test, as in test_nio_conversation.py.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from nio import (
    AsyncClient,
    LoginResponse,
    RoomCreateResponse,
    SyncResponse,
    TagEvent,
    UnknownAccountDataEvent,
)
from nio.api import Api
from nio.responses import EmptyResponse

from tests.e2e.test_nio_conversation import (
    PASSWORD,
    ok,
    register,
    sync_until,
)
from tests.e2e.nio_harness import run_nio_scenario
from tests.live import LiveServer

pytestmark = pytest.mark.e2e

TAG = "m.favourite"
GLOBAL_TYPE = "org.example.settings"
ROOM_TYPE = "org.example.room_settings"


async def put(client: AsyncClient, path: list[str], content: dict[str, Any]) -> None:
    ok(await client._send(EmptyResponse, "PUT", Api._build_path(path), json.dumps(content)), EmptyResponse)


async def delete(client: AsyncClient, path: list[str]) -> None:
    ok(await client._send(EmptyResponse, "DELETE", Api._build_path(path)), EmptyResponse)


def room_data(response: SyncResponse, room_id: str) -> list[Any]:
    room = response.rooms.join.get(room_id)
    return list(room.account_data) if room is not None else []


def tag_event(response: SyncResponse, room_id: str) -> TagEvent | None:
    return next((e for e in room_data(response, room_id) if isinstance(e, TagEvent)), None)


def custom_event(events: list[Any], type_: str) -> UnknownAccountDataEvent | None:
    return next((e for e in events if isinstance(e, UnknownAccountDataEvent) and e.type == type_), None)


async def while_waiting(
    device: AsyncClient, change: Callable[[], Any], done: Callable[[SyncResponse], bool], what: str
) -> SyncResponse:
    """``device`` is already long-polling /sync when ``change`` is made: the change must wake it."""
    waiting = asyncio.create_task(sync_until(device, done, what))
    await asyncio.sleep(0.3)  # let the long-poll reach the server and start waiting
    await change()
    return await waiting


async def _tags_and_account_data(url: str) -> None:
    name = f"data{secrets.token_hex(3)}"
    first = await register(url, name)
    second = AsyncClient(url, first.user_id)
    try:
        ok(await second.login(PASSWORD, device_name=f"{name}'s second nio"), LoginResponse)
        assert second.device_id != first.device_id
        created = ok(await first.room_create(name="Tagged"), RoomCreateResponse)
        room_id = created.room_id
        await sync_until(second, lambda r: room_id in r.rooms.join, "the new room")
        user = first.user_id

        # A tag, set while the second device waits.
        tag_path = ["user", user, "rooms", room_id, "tags", TAG]
        tagged = await while_waiting(
            second,
            lambda: put(first, tag_path, {"order": 0.25}),
            lambda r: tag_event(r, room_id) is not None,
            "the tag",
        )
        event = tag_event(tagged, room_id)
        assert event is not None and event.tags == {TAG: {"order": 0.25}}, event
        assert second.rooms[room_id].tags == {TAG: {"order": 0.25}}

        # Global account data.
        settings = {"theme": "dark", "n": 3}
        synced = await while_waiting(
            second,
            lambda: put(first, ["user", user, "account_data", GLOBAL_TYPE], settings),
            lambda r: custom_event(r.account_data_events, GLOBAL_TYPE) is not None,
            "the global account data",
        )
        found = custom_event(synced.account_data_events, GLOBAL_TYPE)
        assert found is not None and found.content == settings, synced.account_data_events

        # Room account data.
        room_settings = {"muted_until": 0}
        synced = await while_waiting(
            second,
            lambda: put(first, ["user", user, "rooms", room_id, "account_data", ROOM_TYPE], room_settings),
            lambda r: custom_event(room_data(r, room_id), ROOM_TYPE) is not None,
            "the room account data",
        )
        found = custom_event(room_data(synced, room_id), ROOM_TYPE)
        assert found is not None and found.content == room_settings

        # Removing the tag: the room's tags come again, without it.
        untagged = await while_waiting(
            second,
            lambda: delete(first, tag_path),
            lambda r: tag_event(r, room_id) is not None,
            "the tag removal",
        )
        event = tag_event(untagged, room_id)
        assert event is not None and event.tags == {}, event
        assert second.rooms[room_id].tags == {}

        # A fresh device's initial sync has it all: no tag, both account data.
        third = AsyncClient(url, user)
        try:
            ok(await third.login(PASSWORD, device_name=f"{name}'s third nio"), LoginResponse)
            initial = ok(await third.sync(timeout=0, full_state=True), SyncResponse)
            assert custom_event(initial.account_data_events, GLOBAL_TYPE).content == settings
            assert custom_event(room_data(initial, room_id), ROOM_TYPE).content == room_settings
            assert third.rooms[room_id].tags == {}
        finally:
            await third.close()
    finally:
        await second.close()
        await first.close()


def test_nio_tags_and_account_data_reach_the_other_device(
    live_matrix_server: LiveServer, live_server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    run_nio_scenario(_tags_and_account_data(live_server_url), server=live_matrix_server, caplog=caplog)
