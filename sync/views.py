"""GET /sync (an async Django view: a long-poll holds no thread and no database connection while it
waits) and the filter API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import authenticate_request
from ephemeral.actions import expire_typing
from matrixsrv.errors import Forbidden, InvalidParam, MatrixError, NotFound, UnsupportedMethod
from matrixsrv.exception_handler import matrix_error_response
from matrixsrv.http import json_object
from matrixsrv.views import MatrixAPIView
from sync.filters import parse_filter
from sync.models import Filter as StoredFilter
from sync.selectors import SyncResult, build_sync_response, find_filter_definition, load_filter
from sync.tokens import StreamToken
from sync.waiter import get_notifier

T = TypeVar("T")
PRESENCE_STATES = ("online", "offline", "unavailable")
# A long-poll re-reads this long after the earliest typing expiry in the user's rooms (so it finds the
# row expired), announces the expiry and sends it: typing ends on time without any other request.
TYPING_EXPIRY_SLACK_S = 0.005


def _call_and_close(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        connections.close_all()  # this worker thread's connection goes back to the pool


async def run_db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ORM code in a pooled thread and give its connection back at once, so a waiting /sync
    holds neither. (Tests set MATRIX["SYNC_DB_IN_REQUEST_THREAD"]: Django's test client must see the
    test's own transaction, which only the request thread's connection can.)"""
    if settings.MATRIX.get("SYNC_DB_IN_REQUEST_THREAD"):
        return await sync_to_async(fn)(*args, **kwargs)
    return await sync_to_async(_call_and_close, thread_sensitive=False)(fn, *args, **kwargs)


def _parse_timeout_s(raw: str | None) -> float:
    if raw is None or raw == "":
        return 0.0
    try:
        timeout_ms = int(raw)
    except ValueError:
        raise InvalidParam("'timeout' must be an integer number of milliseconds") from None
    if timeout_ms < 0:
        raise InvalidParam("'timeout' must not be negative")
    return min(timeout_ms, settings.MATRIX["SYNC_TIMEOUT_CAP_MS"]) / 1000


def _parse_bool(raw: str | None, name: str) -> bool:
    if raw in (None, "", "false"):
        return False
    if raw == "true":
        return True
    raise InvalidParam(f"'{name}' must be 'true' or 'false'")


@csrf_exempt
async def sync_view(request: HttpRequest) -> JsonResponse:
    """GET /_matrix/client/v3/sync

    Subscribes to wake-ups *before* reading, then waits (capped by MATRIX_SYNC_TIMEOUT_CAP_MS) only
    if there is nothing new; every answer is read from the database up to the committed stream head.
    The initial sync and ``full_state=true`` return at once (the spec: "the timeout parameter will be
    ignored").
    """
    if request.method not in ("GET", "HEAD"):
        return matrix_error_response(UnsupportedMethod())
    try:
        token = await run_db(authenticate_request, request)  # 401 before any parameter is looked at
        assert token is not None
        params = request.GET
        raw_since = params.get("since")
        since = StreamToken.parse(raw_since).pos if raw_since else None
        timeout_s = _parse_timeout_s(params.get("timeout"))
        full_state = _parse_bool(params.get("full_state"), "full_state")
        set_presence = params.get("set_presence")
        if set_presence is not None and set_presence not in PRESENCE_STATES:
            raise InvalidParam("'set_presence' must be online, offline or unavailable")
        user, device_pk = token.user, token.device_id
        sync_filter = await run_db(load_filter, user, params.get("filter"))
        if since is None or full_state or timeout_s <= 0:
            result = await run_db(build_sync_response, user=user, device_pk=device_pk, since=since,
                                  sync_filter=sync_filter, full_state=full_state)
            await _announce_expired_typing(result)
            return JsonResponse(result.body)
        deadline = time.monotonic() + timeout_s
        async with get_notifier().listen(user.pk) as waiter:  # subscribed before the first read
            result = await run_db(build_sync_response, user=user, device_pk=device_pk, since=since,
                                  sync_filter=sync_filter)
            notifier = get_notifier()
            while result.is_empty:
                notifier.route(waiter, result.joined_room_ids)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if result.expired_typing_rooms:
                    # Someone stopped typing by timeout: announce it (a new position that wakes everyone
                    # in the room; or another worker did) and read again at once.
                    await _announce_expired_typing(result)
                else:
                    wait_s = remaining
                    if result.next_expiry_ms is not None:  # wake up when the next typing user expires
                        until_expiry = result.next_expiry_ms / 1000 - time.time() + TYPING_EXPIRY_SLACK_S
                        wait_s = min(remaining, max(0.0, until_expiry))
                    woken = await waiter.wait(after_pos=result.next_pos, timeout_s=wait_s)
                    if not woken and wait_s >= remaining:
                        break
                # Woken: read again from where the empty answer ended (nothing relevant before it).
                result = await run_db(build_sync_response, user=user, device_pk=device_pk,
                                      since=result.next_pos, sync_filter=sync_filter)
            await _announce_expired_typing(result)
        return JsonResponse(result.body)
    except MatrixError as err:
        return matrix_error_response(err)


async def _announce_expired_typing(result: SyncResult) -> None:
    """The read found typing rows past their expiry (and did not show them): announce the change."""
    if result.expired_typing_rooms:
        await run_db(expire_typing, room_ids=result.expired_typing_rooms)


class CreateFilterView(MatrixAPIView):
    """POST /_matrix/client/v3/user/{userId}/filter"""

    def post(self, request: Request, user_id: str) -> Response:
        if user_id != request.user.mxid:
            raise Forbidden("Cannot create filters for other users")
        definition = json_object(request.data)
        parse_filter(definition)  # validate: bad filters are rejected now, not at /sync time
        row = StoredFilter.objects.create(user=request.user, definition=definition)
        return Response({"filter_id": str(row.pk)})


class GetFilterView(MatrixAPIView):
    """GET /_matrix/client/v3/user/{userId}/filter/{filterId}"""

    def get(self, request: Request, user_id: str, filter_id: str) -> Response:
        if user_id != request.user.mxid:
            raise Forbidden("Cannot read other users' filters")
        definition = find_filter_definition(request.user, filter_id)
        if definition is None:
            raise NotFound("Unknown filter")
        return Response(definition)
