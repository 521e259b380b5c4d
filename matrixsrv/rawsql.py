"""Hand-written SQL for the few queries every request runs (token lookup, room lock, auth state).

The ORM spends more CPU compiling a query than PostgreSQL spends running these index lookups
(profiled: ~20% of a send request was query compilation). Each statement here is built once from
the models' metadata and turned back into model instances with ``Model.from_db``, so callers still
get ordinary model objects. Writes stay in the ORM, but for the one write path's batch (``run_batch``).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.db.models import Model
from django.db.models.base import ModelState

M = TypeVar("M", bound=Model)
R = TypeVar("R")


@cache
def columns(model: type[Model], only: tuple[str, ...] | None = None) -> tuple[tuple[str, ...], str]:
    """(attnames, "t.col1, t.col2, ...") for ``model``'s concrete fields, aliased by its table name;
    ``only``: just these fields (by attname, in the model's order), as for ``instance(..., only=)``."""
    table = model._meta.db_table
    fields = _fields(model, only)
    quote = connection.ops.quote_name
    return tuple(f.attname for f in fields), ", ".join(f"{quote(table)}.{quote(f.column)}" for f in fields)


def _fields(model: type[Model], only: tuple[str, ...] | None) -> list[Any]:
    fields = model._meta.concrete_fields
    if only is None:
        return list(fields)
    unknown = set(only) - {f.attname for f in fields}
    if unknown or model._meta.pk.attname not in only:
        raise ValueError(f"{model.__name__}: unknown fields {sorted(unknown)} or no primary key in {only}")
    return [f for f in fields if f.attname in only]


@cache
def _converters(
    model: type[Model], only: tuple[str, ...] | None = None
) -> tuple[tuple[int, Any, tuple[Any, ...]], ...]:
    """The fields that need converting, as the ORM converts them (JSON decoding, SQLite datetimes
    and booleans...): (position among the model's columns, column expression, converters)."""
    table = model._meta.db_table
    out = []
    for i, field in enumerate(_fields(model, only)):
        col = field.get_col(table)
        converters = tuple(connection.ops.get_db_converters(col) + col.get_db_converters(connection))
        if converters:
            out.append((i, col, converters))
    return tuple(out)


def instance(
    model: type[M], row: Sequence[Any], start: int = 0, only: tuple[str, ...] | None = None
) -> tuple[M, int]:
    """Build one ``model`` instance from ``row[start:]``; returns it and the next column offset.

    What ``Model.from_db`` makes, without ``Model.__init__``: every concrete field's attribute is set
    from the row at once (/sync builds a few hundred instances per batch; ``__init__`` and its
    ``pre_init``/``post_init`` signals, which nothing here listens to, were a quarter of its CPU).
    With ``only`` (the columns of ``columns(model, only)``), the other fields are deferred, as with
    ``QuerySet.only``: reading one costs a query."""
    names, _ = columns(model, only)
    end = start + len(names)
    values = list(row[start:end])
    to_convert = _converters(model, only)
    if to_convert:
        db = connections[DEFAULT_DB_ALIAS]  # once (the ``connection`` proxy costs a lookup per use)
        for i, col, converters in to_convert:
            value = values[i]
            for converter in converters:
                value = converter(value, col, db)
            values[i] = value
    obj = model.__new__(model)
    obj.__dict__.update(zip(names, values))
    state = obj._state = ModelState()
    state.adding = False
    state.db = DEFAULT_DB_ALIAS  # the one database these statements run on
    return obj, end


def json_value(value: Any) -> Any:
    """A JSON column read by hand: text on SQLite (and from some drivers), decoded already by psycopg."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def fetch_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    db = connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cur:
        _execute(db, cur, [(sql, params)])
        return cur.fetchone()


def fetch_all(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    db = connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cur:
        _execute(db, cur, [(sql, params)])
        return cur.fetchall()


def run_batch(statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
    """Run several statements, in order, and return the rows of each (none for a statement without
    a result). On PostgreSQL one round trip: the client-side binding cursor sends them as one simple
    query, and each statement takes its snapshot when it starts, so a read placed after a ``FOR
    UPDATE`` sees what the lock's previous holder committed; the first error aborts the rest (and the
    transaction). Parameters are merged into one string: no literal ``%`` in these statements.
    On SQLite one execute each. Reads and writes alike: the one write path batches its writes."""
    db = connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cur:
        if db.vendor != "postgresql":
            out = []
            for sql, params in statements:
                cur.execute(sql, params)
                out.append(cur.fetchall() if cur.description is not None else [])
            return out
        _execute(db, cur, statements)
        # Every result has arrived with the execute (errors raised there): read them off psycopg's
        # cursor, without Django's wrapper, and without building column descriptions to tell rows.
        results = cur.cursor
        out = [results.fetchall() if results.pgresult.status == TUPLES_OK else []]
        while results.nextset():
            out.append(results.fetchall() if results.pgresult.status == TUPLES_OK else [])
        return out


TUPLES_OK = 2  # psycopg.pq.ExecStatus.TUPLES_OK: a statement's result holds rows (maybe none)


def _execute(db: Any, cur: Any, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """Send ``statements`` (one simple query on PostgreSQL), as prepared statements where they are
    (``PreparedStatements``)."""
    if db.vendor != "postgresql":
        ((sql, params),) = statements
        cur.execute(sql, params)
        return

    def plain() -> str:
        # Each statement's parameters merged on its own (psycopg caches the parse of a statement with
        # at most 50 parameters, not of the batch), then the batch sent without parameters.
        return "; ".join(cur.cursor.mogrify(sql, params or None) for sql, params in statements)

    if not settings.MATRIX.get("DB_PREPARE", True):
        cur.execute(plain())
        return
    prepared = PreparedStatements.of(db, cur)
    try:
        cur.execute("; ".join(prepared.text(sql, params) for sql, params in statements))
    except DatabaseError as exc:
        if db.in_atomic_block or not prepared.lost(exc):
            raise
        cur.execute(plain())  # the server forgot them (a DISCARD, a schema change under a plan)


# A statement ending with this is never prepared: PostgreSQL plans it for its parameters each time,
# where a generic plan can't know what matters (the length of an array parameter, say) and may be
# several times slower, notably while the tables have no statistics yet (no ANALYZE).
PLANNED_EACH_TIME = " /* planned each time */"

# An array element that needs no quotes or escapes in an array literal ('{a,b}'): no comma, brace,
# quote, backslash or space, and not the word NULL.
_WORD = r"(?!(?i:null)(?:,|$))[A-Za-z0-9!#$&()*+\-./:;<=>?@^_|~]+"
_ARRAY_WORDS = re.compile(f"{_WORD}(?:,{_WORD})*")  # such elements, joined by commas


class PreparedStatements:
    """The hot path's statements as server-side prepared statements on PostgreSQL, per connection:
    PostgreSQL then parses and plans a statement once per connection (its generic plan), not at every
    execution. For a /sync, planning was about a third of its database time (~1 ms of ~3 ms).

    A statement text is prepared the ``PREPARE_AFTER``-th time this process runs it (one-off texts,
    e.g. lists of user ids written into the SQL, never are), only outside a transaction (a PREPARE
    that fails would abort it; its text is then never prepared again); inside one, statements
    prepared before are used. Then ``EXECUTE name(parameters)`` is sent in its place, its parameters
    merged as literals, so statements still go as one simple query, batched. Django's own queries
    are untouched (psycopg's prepared statements stay off, as Django sets them). PREPARE outlives a
    rollback, so the per-connection registry stays true; a connection with more than
    ``MAX_PER_CONNECTION`` starts over (DEALLOCATE ALL). Off with MATRIX_DB_PREPARE=off, e.g. behind a
    pooler in transaction mode, where a session's prepared statements don't follow its client."""

    PREPARE_AFTER = 2
    MAX_PER_CONNECTION = 400
    MAX_SEEN = 20_000
    _seen: dict[str, int] = {}  # statement text -> times run in this process (bounded)
    _unpreparable: set[str] = set()
    _registries: weakref.WeakKeyDictionary[Any, PreparedStatements] = weakref.WeakKeyDictionary()
    _counter = itertools.count()
    _lock = threading.Lock()

    def __init__(self, db: Any, cur: Any) -> None:
        self.db = db
        self.cursor = cur.cursor  # psycopg's cursor (client-side binding)
        self.names: dict[str, str] = {}
        # Backslashes are plain characters in '...' (the default since PostgreSQL 9.1): ``_literal``
        # may write strings itself.
        info = cur.cursor.connection.info
        self.plain_strings = info.parameter_status("standard_conforming_strings") == "on"

    @classmethod
    def of(cls, db: Any, cur: Any) -> PreparedStatements:
        """The registry of the connection under ``cur`` (a cursor of Django's connection ``db``)."""
        raw = cur.cursor.connection
        with cls._lock:
            registry = cls._registries.get(raw)
            if registry is None:
                registry = cls._registries[raw] = cls(db, cur)
        registry.db, registry.cursor = db, cur.cursor
        return registry

    def text(self, sql: str, params: Sequence[Any]) -> str:
        """What to send for ``sql`` with ``params``: ``EXECUTE`` of its prepared statement, preparing
        it now if it is due, or the statement with its parameters merged."""
        name = self.names.get(sql)
        if name is None and self._due(sql):
            name = self._prepare(sql, len(params))
        if name is None:
            return self.cursor.mogrify(sql, params or None)
        if not params:
            return f"EXECUTE {name}"
        return f"EXECUTE {name}({', '.join(self._literal(p) for p in params)})"

    def _literal(self, value: Any) -> str:
        """``value`` as an SQL literal, as psycopg's ``mogrify`` writes it; integers, plain strings and
        arrays of identifier-like strings (room IDs) without it: it was a tenth of a /sync's CPU."""
        kind = type(value)
        if kind is int:
            return str(value)
        if self.plain_strings:
            if kind is str and "\\" not in value and "\0" not in value:
                return "'" + value.replace("'", "''") + "'"
            if kind is list and value and all(type(v) is str for v in value):
                text = ",".join(value)
                # One match for the whole list (one per element was most of this function's time);
                # the count: no element holds a comma itself.
                if text.count(",") == len(value) - 1 and _ARRAY_WORDS.fullmatch(text):
                    return "'{" + text + "}'"
        return self.cursor.mogrify("%s", (value,))

    def _due(self, sql: str) -> bool:
        if sql.endswith(PLANNED_EACH_TIME) or sql in self._unpreparable or self.db.in_atomic_block:
            return False
        if "%%" in sql or "%(" in sql:
            return False
        with self._lock:
            if len(self._seen) >= self.MAX_SEEN:
                self._seen.clear()
            seen = self._seen[sql] = self._seen.get(sql, 0) + 1
        return seen >= self.PREPARE_AFTER

    def _prepare(self, sql: str, n_params: int) -> str | None:
        if sql.count("%s") != n_params:  # placeholders and parameters don't match: leave it
            self._unpreparable.add(sql)
            return None
        numbered = itertools.count(1)
        body = re.sub(r"%s", lambda _: f"${next(numbered)}", sql)
        if len(self.names) >= self.MAX_PER_CONNECTION:
            self.cursor.execute("DEALLOCATE ALL")
            self.names.clear()
        import psycopg  # PostgreSQL only

        name = f"mx_{next(self._counter)}"
        try:
            self.cursor.execute(f"PREPARE {name} AS {body}")
        except psycopg.Error:
            self._unpreparable.add(sql)  # e.g. a parameter whose type PostgreSQL can't infer
            return None
        self.names[sql] = name
        return name

    def lost(self, exc: DatabaseError) -> bool:
        """``exc`` says the server no longer has (a plan fit for) a prepared statement; then this
        connection's registry is cleared, and the server's statements deallocated."""
        code = getattr(getattr(exc, "__cause__", None), "sqlstate", None)
        if code not in ("26000", "0A000") or not self.names:  # invalid statement name, changed result type
            return False
        self.names.clear()
        self.cursor.execute("DEALLOCATE ALL")
        return True


class Merge(Protocol):
    """How reads of one kind, for different keys (users, devices), become ONE statement: its rows
    start with the key they belong to, and each read gets the rows of its own key (and parses them
    as if its own statement had returned them; a merged statement may return more rows than a
    read's own statement would, which its ``parse`` leaves out)."""

    def statement(self, reads: Sequence[Read[Any]]) -> tuple[str, Sequence[Any]]: ...


class Read(NamedTuple, Generic[R]):
    """One read statement and what turns its rows into a result: a query that a caller may run on its
    own (``run_read``) or together with others in one round trip (``run_reads``, as /sync does for
    the long-polls woken by one event). An empty ``sql`` needs no query: ``parse([])`` is the result.
    With ``merge``, ``run_reads`` may run it as part of one statement for several ``key``s."""

    sql: str
    params: Sequence[Any]
    parse: Callable[[list[tuple[Any, ...]]], R]
    merge: Merge | None = None
    key: Any = None


def run_read(read: Read[R]) -> R:
    return read.parse(fetch_all(read.sql, read.params) if read.sql else [])


def run_reads(reads: Sequence[Read[Any]]) -> list[Any]:
    """Each read's result, with as few statements as possible, sent as one batch (``run_batch``):
    identical statements run once, and reads of one ``merge`` kind run as one statement. Reads of
    one statement with the same ``parse`` (a plain function, not a ``partial`` with per-read
    context) share its result: parsers' results are not modified by their users."""
    statements: list[tuple[str, Sequence[Any]]] = []
    index: dict[tuple[str, tuple[Any, ...]], int] = {}  # an identical statement's place in the batch
    source: list[tuple[int, Any]] = []  # per read: its statement, and the key to pick its rows by
    merged: dict[Merge, list[int]] = {}  # a kind's reads (two or more are merged)
    for i, read in enumerate(reads):
        if read.merge is not None:
            merged.setdefault(read.merge, []).append(i)
    merged = {kind: members for kind, members in merged.items() if len(members) > 1}
    in_statement: dict[int, int] = {}
    for kind, members in merged.items():
        statements.append(kind.statement([reads[i] for i in members]))
        for i in members:
            in_statement[i] = len(statements) - 1
    for i, read in enumerate(reads):
        if i in in_statement:
            source.append((in_statement[i], read.key))
        elif not read.sql:
            source.append((-1, None))
        else:
            key = (read.sql, tuple(tuple(p) if isinstance(p, list) else p for p in read.params))
            if key not in index:
                index[key] = len(statements)
                statements.append((read.sql, read.params))
            source.append((index[key], _OWN))
    if len(statements) == 1:
        results = [fetch_all(*statements[0])]
    else:
        results = run_batch(statements) if statements else []
    split: dict[int, dict[Any, list[tuple[Any, ...]]]] = {}
    parsed: dict[tuple[int, Any, Any], Any] = {}
    out = []
    for read, (n, key) in zip(reads, source):
        if n >= 0 and (n, key, read.parse) in parsed:
            out.append(parsed[n, key, read.parse])
            continue
        if n < 0:
            rows: list[tuple[Any, ...]] = []
        elif key is _OWN:
            rows = results[n]
        else:
            if n not in split:
                by_key: dict[Any, list[tuple[Any, ...]]] = {}
                for row in results[n]:
                    by_key.setdefault(row[0], []).append(row[1:])
                split[n] = by_key
            rows = split[n].get(key, [])
        out.append(read.parse(rows))
        if n >= 0:
            parsed[n, key, read.parse] = out[-1]
    return out


_OWN = object()  # a read that ran its own statement (not merged)


def marks(n: int) -> str:
    """``n`` placeholders for an ``IN (...)`` list."""
    return ", ".join(["%s"] * n)


def one_of(values: Sequence[Any]) -> tuple[str, list[Any]]:
    """A condition "is one of ``values``" (not empty) and its parameters: ``= ANY(%s)`` with one array
    on PostgreSQL (psycopg merges a statement with more than 50 placeholders anew each time, twice as
    slow for a user's 50 rooms), ``IN (%s, ...)`` on SQLite."""
    if connection.vendor == "postgresql":
        return "= ANY(%s)", [list(values)]
    return f"IN ({marks(len(values))})", list(values)


@dataclass(frozen=True)
class InMerge:
    """The common ``Merge``: reads whose statements differ only in one key (``WHERE user_id = %s``),
    run as ``template`` with ``IN (...)`` the keys, its rows starting with the key. ``before`` and
    ``after`` are the parameters around the keys, the same for every read merged (they are part of
    this object's identity: reads with other parameters form another merge)."""

    template: str  # "{keys}" marks where the keys' placeholders go
    before: tuple[Any, ...] = ()
    after: tuple[Any, ...] = ()

    def statement(self, reads: Sequence[Read[Any]]) -> tuple[str, Sequence[Any]]:
        keys = list(dict.fromkeys(read.key for read in reads))
        if all(type(key) is int for key in keys):  # row ids: written out (no placeholders to merge),
            # in order: the same users' reads are the same text (PreparedStatements)
            return self.template.format(keys=int_list(sorted(keys))), [*self.before, *self.after]
        return self.template.format(keys=marks(len(keys))), [*self.before, *keys, *self.after]


def int_list(values: Sequence[int]) -> str:
    """Integers as an SQL list, for ``IN (...)``: psycopg re-parses a statement with more than 50
    placeholders at every execution, which cost ~50 µs per 100 keys."""
    return ", ".join(str(int(value)) for value in values)
