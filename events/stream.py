"""Stream positions: one counter for everything a client syncs, commit-ordered (DESIGN.md §4.4)."""

from __future__ import annotations

from django.db import connection

_TABLE = "events_streamhead"


def next_stream_position() -> int:
    """Allocate the next position. Call as late as possible in the writing transaction: the row lock
    taken here is held until COMMIT/ROLLBACK, which is what makes commit order equal stream order.
    (On SQLite the write transaction already holds the database lock: BEGIN IMMEDIATE.)"""
    assert connection.in_atomic_block, "stream positions are allocated inside a transaction"
    with connection.cursor() as cur:
        cur.execute(f"UPDATE {_TABLE} SET pos = pos + 1 WHERE id = 1 RETURNING pos")
        row = cur.fetchone()
        if row is None:  # the head row is made by a migration; a flushed test database lacks it
            cur.execute(
                f"INSERT INTO {_TABLE} (id, pos) VALUES (1, (SELECT COALESCE(MAX(stream_pos), 0) "
                f"FROM events_event)) ON CONFLICT (id) DO NOTHING"
            )
            cur.execute(f"UPDATE {_TABLE} SET pos = pos + 1 WHERE id = 1 RETURNING pos")
            row = cur.fetchone()
        return int(row[0])


def current_stream_position() -> int:
    """The newest committed position: every row at or below it is visible to this reader."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT pos FROM {_TABLE} WHERE id = 1")
        row = cur.fetchone()
    return int(row[0]) if row else 0
