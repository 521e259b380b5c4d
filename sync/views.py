"""GET /sync (an async Django view: a long-poll holds no thread and no database connection while it
waits) and the filter API."""

from __future__ import annotations

import time
from dataclasses import dataclass
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import authenticate_all_with_reads, authenticate_with_reads
from ephemeral.actions import expire_typing
from matrixsrv.errors import Forbidden, InvalidParam, MatrixError, NotFound, UnsupportedMethod
from matrixsrv.exception_handler import matrix_error_response
from matrixsrv.http import json_object
from matrixsrv.views import MatrixAPIView
from presence import rules as presence_rules
from presence.actions import announce_due_presence, now_ms, record_sync
from sync.filters import Filter, parse_filter
from sync.models import Filter as StoredFilter
from sync.selectors import (
    SyncRequest,
    SyncResult,
    add_own_presence,
    build_sync_response,
    build_sync_responses,
    find_filter_definition,
    head_read,
    known_filter,
    load_filter,
)
from sync import quiet
from sync.batch import get_announce_batcher, get_auth_batcher, get_batcher
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
    return await _in_pooled_thread(fn, *args, **kwargs)


# Made once: asgiref's wrapper costs more to make than to call (a fan-out's every read came here).
_in_pooled_thread = sync_to_async(_call_and_close, thread_sensitive=False)


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
        params = request.GET
        # A long-poll also needs the stream head, for the read it may skip (sync/quiet.py): read with
        # the token, and with the other long-polls' tokens of the moment (sync/batch.py). A sync
        # answered at once is read in the thread that reads its token. 401 before any parameter is
        # validated.
        long_poll = params.get("since") and params.get("timeout") not in (None, "", "0")
        if not long_poll or params.get("full_state") == "true":
            token, query, sync_filter, result = await run_db(_authenticate_and_read, request)
            if not await _record_presence(
                token.user, query.set_presence or presence_rules.ONLINE, 0, result, sync_filter
            ):
                result = await run_db(build_sync_response, **query.read_args(token, sync_filter))
            await _announce_expired_typing(result)
            return JsonResponse(result.body)
        token, head_at_auth = await get_auth_batcher().read(request, _authenticate_batch)
        query = _parse_query(params)
        user, device_pk, since, timeout_s = token.user, token.device_id, query.since, query.timeout_s
        set_presence, raw_filter = query.set_presence, query.raw_filter
        assert since is not None  # (timeout=00 or a cap of 0: no wait, through the same code)
        sync_filter = known_filter(user, raw_filter)  # inline, none or read before: no query, no thread
        if sync_filter is None:
            sync_filter = await run_db(load_filter, user, raw_filter)
        deadline = time.monotonic() + timeout_s
        quiet_key = (token.token_hash, raw_filter or "")
        async with get_notifier().listen(user.pk) as waiter:  # subscribed before the first read
            # The first read is skipped when nothing can have happened since ``since`` (sync/quiet.py).
            result = _quiet_result(quiet_key, since, head_at_auth, get_notifier().newest_pos)
            if result is None:
                result = await _read(quiet_key, user=user, device_pk=device_pk, since=since,
                                     sync_filter=sync_filter)
            if not await _record_presence(
                user, set_presence or presence_rules.ONLINE, int(timeout_s * 1000), result, sync_filter
            ):
                result = await _read(quiet_key, user=user, device_pk=device_pk, since=since,
                                     sync_filter=sync_filter)
            notifier = get_notifier()
            while result.is_empty:
                notifier.route(waiter, result.joined_room_ids)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if result.expired_typing_rooms or result.overdue_presence:
                    # Someone stopped typing by timeout, or someone's presence changed by itself (idle,
                    # offline): announce it (a new position that wakes everyone in the room; or another
                    # worker did) and read again at once.
                    await _announce_expired_typing(result)
                else:
                    wait_s = remaining
                    if result.next_expiry_ms is not None:  # the next typing expiry or presence change
                        until_expiry = result.next_expiry_ms / 1000 - time.time() + TYPING_EXPIRY_SLACK_S
                        wait_s = min(remaining, max(0.0, until_expiry))
                    woken = await waiter.wait(after_pos=result.next_pos, timeout_s=wait_s)
                    if not woken and wait_s >= remaining:
                        break
                # Woken: read again from where the empty answer ended (nothing relevant before it).
                result = await _read(quiet_key, user=user, device_pk=device_pk, since=result.next_pos,
                                     sync_filter=sync_filter)
            if result.body is None:  # the first read was skipped and nothing woke us: read the answer
                result = await _read(quiet_key, user=user, device_pk=device_pk, since=result.next_pos,
                                     sync_filter=sync_filter)
            await _announce_expired_typing(result)
        return JsonResponse(result.body)
    except MatrixError as err:
        return matrix_error_response(err)


async def _authenticate_batch(requests: Sequence[HttpRequest]) -> list[tuple[Any, int] | BaseException]:
    """Long-polls' access tokens and the stream head, for every long-poll that came in this turn of
    the event loop at once (sync/batch.py): one thread hop and one round trip."""
    return await run_db(_authenticate_with_head, requests)


def _authenticate_with_head(requests: Sequence[HttpRequest]) -> list[tuple[Any, int] | BaseException]:
    tokens, (head,) = authenticate_all_with_reads(requests, [head_read()])
    return [token if isinstance(token, MatrixError) else (token, head[0]) for token in tokens]


@dataclass(frozen=True)
class _Query:
    """/sync's query parameters, parsed (the filter is loaded with the access token's user)."""

    since: int | None
    timeout_s: float
    full_state: bool
    set_presence: str | None
    raw_filter: str | None

    def read_args(self, token: Any, sync_filter: Filter) -> dict[str, Any]:
        return {"user": token.user, "device_pk": token.device_id, "since": self.since,
                "sync_filter": sync_filter, "full_state": self.full_state}


def _parse_query(params: Any) -> _Query:
    raw_since = params.get("since")
    set_presence = params.get("set_presence")
    if set_presence is not None and set_presence not in PRESENCE_STATES:
        raise InvalidParam("'set_presence' must be online, offline or unavailable")
    return _Query(
        since=StreamToken.parse(raw_since).pos if raw_since else None,
        timeout_s=_parse_timeout_s(params.get("timeout")),
        full_state=_parse_bool(params.get("full_state"), "full_state"),
        set_presence=set_presence,
        raw_filter=params.get("filter"),
    )


def _authenticate_and_read(request: HttpRequest) -> tuple[Any, _Query, Filter, SyncResult]:
    """A sync answered at once (initial, ``full_state``, no ``timeout``), in one thread: the access
    token, the parameters, the filter and the answer."""
    token, (head,) = authenticate_with_reads(request, [head_read()])  # one round trip
    query = _parse_query(request.GET)
    sync_filter = load_filter(token.user, query.raw_filter)
    return token, query, sync_filter, build_sync_response(**query.read_args(token, sync_filter), head=head)


def _quiet_result(key: tuple[str, str], since: int, head: int | None, newest_woken: int) -> SyncResult | None:
    """The empty result of the read this long-poll may skip (sync/quiet.py), or None. It may when a
    read at ``since`` is remembered and nothing has happened since: the stream head, read with the
    access token (before this long-poll subscribed), was still at ``since``, and no wake-up for a
    later position reached this worker since then (``newest_woken``: one that arrived before the
    subscription woke nobody here; one after it wakes this waiter). Its ``body`` is None: never an
    answer."""
    read = quiet.recall(key, since=since, now_ms=now_ms())
    if read is None or head != since or newest_woken > since:
        return None
    return SyncResult(
        body=None, next_pos=since, is_empty=True, joined_room_ids=read.joined_room_ids,
        next_expiry_ms=read.next_expiry_ms, own_presence=read.own_presence,
    )


async def _read(key: tuple[str, str], **kwargs: Any) -> SyncResult:
    """A long-poll's read, made together with the other long-polls' reads of the moment
    (sync/batch.py), and remembered for the next one (sync/quiet.py)."""
    result = await get_batcher().read(SyncRequest(**kwargs, waits=True), _build_batch)
    if not result.expired_typing_rooms and not result.overdue_presence:
        quiet.remember(key, quiet.QuietRead(
            pos=result.next_pos, joined_room_ids=result.joined_room_ids,
            next_expiry_ms=result.next_expiry_ms, own_presence=result.own_presence,
        ))
    return result


async def _build_batch(requests: Sequence[SyncRequest]) -> list[SyncResult | BaseException]:
    return await run_db(build_sync_responses, requests)


async def _announce_expired_typing(result: SyncResult) -> None:
    """The read found typing rows past their expiry (and did not show them): announce the change.
    Likewise presence that changed by itself (idle, offline, no longer currently active): the read
    reports the users whose change is due (presence.actions.announce_due_presence, idempotent).
    With what the other requests of the moment found (sync/batch.py): one thread hop and at most
    one transaction of each kind for all of them."""
    if result.expired_typing_rooms or result.overdue_presence:
        await get_announce_batcher().read(
            (result.expired_typing_rooms, result.overdue_presence), _announce_batch
        )


async def _announce_batch(
    requests: Sequence[tuple[frozenset[str], frozenset[int]]]
) -> list[None | BaseException]:
    rooms = frozenset().union(*(rooms for rooms, _ in requests))
    users = frozenset().union(*(users for _, users in requests))
    await run_db(_announce, rooms, users)
    return [None] * len(requests)


def _announce(rooms: frozenset[str], users: frozenset[int]) -> None:
    if rooms:
        expire_typing(room_ids=rooms)
    if users:
        announce_due_presence(user_pks=users)


async def _record_presence(
    user: Any, set_presence: str, timeout_ms: int, result: SyncResult, sync_filter: Filter
) -> bool:
    """``set_presence`` (default online), decided on the user's presence as this sync's read found it:
    an already-online user whose connection lease outlasts this long-poll costs no query and no
    write (presence.rules.on_sync); otherwise presence.actions.record_sync writes (a lease renewal
    at most every ~30 s is one silent UPDATE; a change others see takes a position and wakes them).

    False when the change took a position that ``result`` cannot simply be completed with
    (sync.selectors.add_own_presence): the caller reads again, so the answer holds the user's own new
    presence and its ``next_batch`` is past it (as Synapse applies ``set_presence`` before building
    the response); else the user's next long-poll would wake at once for it. True otherwise (``result``
    is the answer, completed if need be)."""
    own = result.own_presence
    now = now_ms()
    if presence_rules.on_sync(own, set_presence=set_presence, now_ms=now, timeout_ms=timeout_ms) is None:
        return True
    written = await run_db(record_sync, user=user, set_presence=set_presence, timeout_ms=timeout_ms, own=own)
    if written is None:
        return True
    pos, record = written
    event = presence_rules.event(record, now_ms(), user_id=user.mxid)
    return add_own_presence(result, pos=pos, event=event, sync_filter=sync_filter)


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
