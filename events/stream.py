"""Stream positions: one counter for everything a client syncs, commit-ordered (DESIGN.md §4.4)."""

from __future__ import annotations

from django.db import connection

STREAM_HEAD_TABLE = _TABLE = "events_streamhead"  # one row (id 1): the newest committed position


# An upsert, so that a database without the head row (the migration makes it; a flushed test database
# lacks it) starts after its newest event. The conflict path takes the row's lock like an UPDATE.
_ALLOCATE_SQL = (
    f"INSERT INTO {_TABLE} (id, pos) VALUES (1, (SELECT COALESCE(MAX(stream_pos), 0) + 1 FROM events_event)) "
    f"ON CONFLICT (id) DO UPDATE SET pos = {_TABLE}.pos + 1 RETURNING pos"
)
# The position this transaction allocated, as an SQL value: it holds the head row's lock, so the row
# is its own until COMMIT. Lets later statements of a batch use the position without a round trip.
ALLOCATED_POSITION_SQL = f"(SELECT pos FROM {_TABLE} WHERE id = 1)"


def allocate_statement() -> tuple[str, list[object]]:
    """``next_stream_position``'s statement, for a batch (``matrixsrv.rawsql.run_batch``): its one
    row is the position. The same rule: as late as possible in the transaction."""
    return _ALLOCATE_SQL, []


def next_stream_position() -> int:
    """Allocate the next position. Call as late as possible in the writing transaction: the row lock
    taken here is held until COMMIT/ROLLBACK, which is what makes commit order equal stream order.
    (On SQLite the write transaction already holds the database lock: BEGIN IMMEDIATE.)"""
    assert connection.in_atomic_block, "stream positions are allocated inside a transaction"
    with connection.cursor() as cur:
        cur.execute(_ALLOCATE_SQL)
        return int(cur.fetchone()[0])


def current_stream_position() -> int:
    """The newest committed position: every row at or below it is visible to this reader."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT pos FROM {_TABLE} WHERE id = 1")
        row = cur.fetchone()
    return int(row[0]) if row else 0
