"""Client-Server API: sending events, room state, redaction."""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from matrixsrv.views import MatrixAPIView

from events import actions
from events.actions import SendContext
from events.pdu import EventTypes
from events.selectors import current_state_events, state_at, state_events_for_keys
from events.formatting import format_client_event
from matrixsrv.errors import BadAlias, InvalidParam, NotFound
from matrixsrv.identifiers import RoomAlias as RoomAliasID
from matrixsrv.http import json_object, opt_str
from presence.actions import record_activity
from rooms.selectors import access_room_state_position, resolve_alias


class SendMessageEventView(MatrixAPIView):
    """PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}

    Idempotent per (device, txnId): a retry returns the first event's ID and stores nothing new.
    """

    def put(self, request: Request, room_id: str, event_type: str, txn_id: str) -> Response:
        content = json_object(request.data)
        event_id = actions.send_message_event(
            sender=request.user, room_id=room_id, event_type=event_type, content=content,
            send=SendContext(device=request.auth.device, txn_id=txn_id),
        )
        record_activity(user=request.user)  # spec: sending a message is pro-active (last_active_ago)
        return Response({"event_id": event_id})


class SendMessageEventNoTxnView(MatrixAPIView):
    """POST /_matrix/client/r0/rooms/{roomId}/send/{eventType}

    The form the seed's curl walk-through uses (no transaction ID, so no idempotency).
    """

    def post(self, request: Request, room_id: str, event_type: str) -> Response:
        content = json_object(request.data)
        event_id = actions.send_message_event(
            sender=request.user, room_id=room_id, event_type=event_type, content=content,
            send=SendContext(device=request.auth.device),
        )
        record_activity(user=request.user)  # spec: sending a message is pro-active (last_active_ago)
        return Response({"event_id": event_id})


class _JsonOnlyNegotiation(BaseContentNegotiation):
    """Always JSON. DRF's default negotiation reads ``?format=`` as a renderer override and answers
    404 for ``?format=event``, but here ``format`` is the spec's query parameter (event|content)."""

    def select_renderer(self, request, renderers, format_suffix=None):  # type: ignore[no-untyped-def]
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):  # type: ignore[no-untyped-def]
        return parsers[0]


class RoomStateEventView(MatrixAPIView):
    """GET, PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}

    The state key may be empty (``/state/m.room.topic`` or ``/state/m.room.topic/``) or contain ``/``.
    ``?format=event`` returns the whole event instead of its content.
    """

    content_negotiation_class = _JsonOnlyNegotiation

    def get(self, request: Request, room_id: str, event_type: str, state_key: str = "") -> Response:
        pos = access_room_state_position(room_id, request.user.mxid)
        if pos is None:
            event = state_events_for_keys(room_id, {(event_type, state_key)}).get((event_type, state_key))
        else:
            found = state_at(room_id, pos, keys={(event_type, state_key)})
            event = found[0] if found else None
        if event is None:
            raise NotFound("Event not found")
        fmt = request.query_params.get("format", "content")
        if fmt == "event":
            return Response(format_client_event(event))
        if fmt != "content":
            raise InvalidParam("format must be 'content' or 'event'")
        return Response(event.content)

    def put(self, request: Request, room_id: str, event_type: str, state_key: str = "") -> Response:
        content = json_object(request.data)
        if event_type == EventTypes.CANONICAL_ALIAS:
            _check_canonical_alias_content(room_id, content)
        event_id = actions.send_state_event(
            sender=request.user, room_id=room_id, event_type=event_type, state_key=state_key, content=content
        )
        return Response({"event_id": event_id})


def _check_canonical_alias_content(room_id: str, content: dict[str, Any]) -> None:
    """Spec: new aliases in m.room.canonical_alias must be valid and point at this room (M_BAD_ALIAS)."""
    aliases: list[Any] = []
    if content.get("alias") is not None:
        aliases.append(content["alias"])
    alt = content.get("alt_aliases", [])
    if not isinstance(alt, list):
        raise InvalidParam("alt_aliases must be a list")
    current = state_events_for_keys(room_id, {(EventTypes.CANONICAL_ALIAS, "")}).get((EventTypes.CANONICAL_ALIAS, ""))
    known = set()
    if current is not None:
        known = {current.content.get("alias"), *(current.content.get("alt_aliases") or [])}
    for alias in [*aliases, *alt]:
        if not isinstance(alias, str):
            raise InvalidParam("Aliases must be strings")
        RoomAliasID.parse(alias)
        if alias in known:
            continue
        try:
            points_to = resolve_alias(alias)
        except NotFound:
            raise BadAlias(f"The alias {alias} does not exist") from None
        if points_to != room_id:
            raise BadAlias(f"The alias {alias} does not point to this room")


class RoomStateView(MatrixAPIView):
    """GET /_matrix/client/v3/rooms/{roomId}/state"""

    def get(self, request: Request, room_id: str) -> Response:
        pos = access_room_state_position(room_id, request.user.mxid)
        events = current_state_events(room_id) if pos is None else state_at(room_id, pos)
        return Response([format_client_event(e) for e in events])


class RedactEventView(MatrixAPIView):
    """PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}"""

    def put(self, request: Request, room_id: str, event_id: str, txn_id: str | None = None) -> Response:
        body = json_object(request.data)
        redaction_id = actions.redact_event(
            sender=request.user, room_id=room_id, target_event_id=event_id,
            reason=opt_str(body, "reason", max_length=4096),
            send=SendContext(device=request.auth.device, txn_id=txn_id),
        )
        return Response({"event_id": redaction_id})

    def post(self, request: Request, room_id: str, event_id: str, txn_id: str | None = None) -> Response:
        return self.put(request, room_id, event_id, txn_id)
