"""Child-process side of test_stream_ordering: writers that run in their own OS processes.

Started with multiprocessing's "spawn" method, so each child is a fresh interpreter: it points the
real settings at the parent's test database (through ``DATABASE_URL``, before ``django.setup()``)
and then writes through the one write path, ``events.actions.send_message_event``. Nothing here
imports Django at module level: the environment must be in place before settings load.
"""

from __future__ import annotations

import os
import time
from typing import Any


def _setup_django(database_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ.pop("REDIS_URL", None)  # wake-ups go to the in-memory layer: no shared Redis state
    import django

    django.setup()


def _install_unordered_allocator(sequence: str, delay_s: float) -> None:
    """Negative control only: replace the commit-ordered allocator with a bare sequence and a delay
    between allocating and committing, the pattern behind Synapse #7206/#14158. A reader using
    ``max(stream_pos)`` as its horizon can then see a higher position before a lower one commits.

    Only odd positions wait: an even position allocated during that wait commits first, so the
    overtaking happens on every overlap instead of depending on scheduling noise (with an equal
    delay for all, the earlier allocation nearly always committed first and the control was flaky)."""
    import events.actions
    import push.actions

    # The write path allocates in its batch (events.stream.allocate_statement) and names the position
    # in later statements (ALLOCATED_POSITION_SQL): a bare sequence, and the session's value of it.
    # The odd positions sleep on the server, between allocating and the rest of the batch (COMMIT).
    allocate_sql = (
        f"SELECT p FROM (SELECT nextval('{sequence}') AS p) s, "
        f"LATERAL (SELECT pg_sleep(CASE WHEN mod(p, 2) = 1 THEN {delay_s} ELSE 0 END)) z"
    )
    events.actions.allocate_statement = lambda: (allocate_sql, [])
    events.actions.ALLOCATED_POSITION_SQL = f"(SELECT currval('{sequence}'))"
    push.actions.ALLOCATED_POSITION_SQL = events.actions.ALLOCATED_POSITION_SQL
    events.actions._insert_event_sql.cache_clear()
    push.actions._insert_sql.cache_clear()


def write_events(
    *,
    writer: int,
    database_url: str,
    sender_pk: int,
    room_ids: list[str],
    count: int,
    deadline: float,
    ready: Any,
    start: Any,
    results: Any,
    unordered_sequence: str | None = None,
) -> None:
    """Signal ``ready``, wait for ``start``, then send up to ``count`` m.room.message events
    round-robin into ``room_ids``; stop at ``deadline`` (time.time()). Puts ``(writer, [event_id, ...], error_or_None)`` on ``results``."""
    sent: list[str] = []
    error = None
    try:
        _setup_django(database_url)
        from django.db import connection

        from accounts.models import User
        from events.actions import send_message_event

        if unordered_sequence is not None:
            _install_unordered_allocator(unordered_sequence, delay_s=0.02)
        sender = User.objects.get(pk=sender_pk)
        connection.ensure_connection()
        ready.release()
        if not start.wait(timeout=max(0.0, deadline - time.time())):
            raise TimeoutError("the start signal never came")
        for i in range(count):
            if time.time() > deadline:
                break
            room_id = room_ids[i % len(room_ids)]
            sent.append(
                send_message_event(
                    sender=sender, room_id=room_id, event_type="m.room.message",
                    content={"msgtype": "m.text", "body": f"writer {writer} message {i}"},
                )
            )
        connection.close()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test with it
        error = f"{type(exc).__name__}: {exc}"
    results.put((writer, sent, error))
