"""Events in the client format (spec: "ClientEvent"). A plain function: it is on every hot path."""

from __future__ import annotations

import time
from typing import Any

from events.models import Event


def format_client_event(
    event: Event,
    *,
    device_pk: int | None = None,
    now_ms: int | None = None,
    include_room_id: bool = True,
) -> dict[str, Any]:
    """The event as clients see it; ``unsigned.transaction_id`` only for the device that sent it."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    out: dict[str, Any] = {
        "type": event.type,
        "sender": event.sender,
        "content": event.content,
        "event_id": event.event_id,
        "origin_server_ts": event.origin_server_ts,
    }
    if include_room_id:
        out["room_id"] = event.room_id
    unsigned: dict[str, Any] = {"age": max(0, now - event.origin_server_ts)}
    if event.state_key is not None:
        out["state_key"] = event.state_key
        if event.replaces_state is not None:
            unsigned["replaces_state"] = event.replaces_state
            unsigned["prev_content"] = event.prev_content
            unsigned["prev_sender"] = event.prev_sender
    if event.redacts is not None:
        out["redacts"] = event.redacts
    if event.redacted_because is not None:
        unsigned["redacted_because"] = event.redacted_because
    if device_pk is not None and event.txn_id is not None and event.sender_device_id == device_pk:
        unsigned["transaction_id"] = event.txn_id
    out["unsigned"] = unsigned
    return out
