"""Hand-written SQL for the few queries every request runs (token lookup, room lock, auth state).

The ORM spends more CPU compiling a query than PostgreSQL spends running these index lookups
(profiled: ~20% of a send request was query compilation). Each statement here is built once from
the models' metadata and turned back into model instances with ``Model.from_db``, so callers still
get ordinary model objects. Writes stay in the ORM, but for the one write path's batch (``run_batch``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Model

M = TypeVar("M", bound=Model)


@cache
def columns(model: type[Model]) -> tuple[tuple[str, ...], str]:
    """(attnames, "t.col1, t.col2, ...") for ``model``'s concrete fields, aliased by its table name."""
    table = model._meta.db_table
    fields = model._meta.concrete_fields
    quote = connection.ops.quote_name
    return tuple(f.attname for f in fields), ", ".join(f"{quote(table)}.{quote(f.column)}" for f in fields)


@cache
def _converters(model: type[Model]) -> tuple[tuple[Any, tuple[Any, ...]], ...]:
    """Per field: (column expression, the backend's and the field's value converters), as the ORM
    applies them (JSON decoding, SQLite datetimes and booleans...)."""
    table = model._meta.db_table
    out = []
    for field in model._meta.concrete_fields:
        col = field.get_col(table)
        out.append((col, tuple(connection.ops.get_db_converters(col) + col.get_db_converters(connection))))
    return tuple(out)


def instance(model: type[M], row: Sequence[Any], start: int = 0) -> tuple[M, int]:
    """Build one ``model`` instance from ``row[start:]``; returns it and the next column offset."""
    names, _ = columns(model)
    end = start + len(names)
    values = []
    for value, (col, converters) in zip(row[start:end], _converters(model)):
        for converter in converters:
            value = converter(value, col, connection)
        values.append(value)
    return model.from_db(connection.alias, list(names), values), end


def json_value(value: Any) -> Any:
    """A JSON column read by hand: text on SQLite (and from some drivers), decoded already by psycopg."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def fetch_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def fetch_all(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def run_batch(statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
    """Run several statements, in order, and return the rows of each (none for a statement without
    a result). On PostgreSQL one round trip: the client-side binding cursor sends them as one simple
    query, and each statement takes its snapshot when it starts, so a read placed after a ``FOR
    UPDATE`` sees what the lock's previous holder committed; the first error aborts the rest (and the
    transaction). Parameters are merged into one string: no literal ``%`` in these statements.
    On SQLite one execute each. Reads and writes alike: the one write path batches its writes."""
    with connection.cursor() as cur:
        if connection.vendor != "postgresql":
            out = []
            for sql, params in statements:
                cur.execute(sql, params)
                out.append(cur.fetchall() if cur.description is not None else [])
            return out
        # Each statement's parameters merged on its own (psycopg caches the parse of a statement with
        # at most 50 parameters, not of the batch), then the batch sent without parameters.
        cur.execute("; ".join(cur.cursor.mogrify(sql, params or None) for sql, params in statements))
        out = [cur.fetchall() if cur.description is not None else []]
        while cur.nextset():
            out.append(cur.fetchall() if cur.description is not None else [])
        return out
