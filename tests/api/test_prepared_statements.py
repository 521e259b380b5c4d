"""The hot path's hand-written statements as prepared statements on PostgreSQL
(matrixsrv.rawsql.PreparedStatements).

A statement text is prepared on a connection the second time the process runs it, outside a
transaction, and then sent as ``EXECUTE name(literals)``; the answers must be exactly those of the
plain statements, through the real /sync route as much as one by one. A statement PostgreSQL cannot
prepare, a server that forgot its statements, a transaction and MATRIX_DB_PREPARE=off all fall back
to the plain statement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from django.db import connection, transaction

from matrixsrv.rawsql import PLANNED_EACH_TIME, PreparedStatements, fetch_all, fetch_one, run_batch
from tests.api.test_sync_batch import _stable
from tests.matrix_client import MatrixClient
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import sync, timeline_bodies

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's (SQLite: plain ones)"
)

ROOMS_OF = "SELECT room_id FROM rooms_membership WHERE user_id = %s AND membership = %s ORDER BY room_id"


def _prepared_here() -> dict[str, str]:
    """This connection's prepared statements: statement text -> name."""
    with connection.cursor() as cur:
        cur.execute("SELECT name, statement FROM pg_prepared_statements")
        return {statement: name for name, statement in cur.fetchall()}


def _forget_everything() -> None:
    PreparedStatements._seen.clear()
    PreparedStatements._unpreparable.clear()
    with connection.cursor() as cur:
        cur.execute("DEALLOCATE ALL")
        PreparedStatements.of(connection, cur).names.clear()


@pytest.fixture
def fresh(settings: Any) -> None:
    settings.MATRIX = {**settings.MATRIX, "DB_PREPARE": True}
    _forget_everything()


@pytest.mark.django_db(transaction=True)
def test_the_second_run_prepares_and_every_run_answers_the_same(
    fresh: None, matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room = joined_room_with(matrix, alice, bob)
    user_pk = fetch_one("SELECT id FROM accounts_user WHERE mxid = %s", [alice.user_id])
    assert user_pk is not None
    answers = [fetch_all(ROOMS_OF, [user_pk[0], "join"]) for _ in range(3)]
    assert answers == [[(room,)]] * 3
    assert any("$1" in text and "rooms_membership" in text for text in _prepared_here())
    # other parameters through the same prepared statement
    assert fetch_all(ROOMS_OF, [user_pk[0], "invite"]) == []


@pytest.mark.django_db(transaction=True)
def test_a_sync_through_the_route_answers_the_same_with_prepared_statements(
    fresh: None, matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room = joined_room_with(matrix, alice, bob, name="prepared")
    since = sync(matrix, bob)["next_batch"]
    matrix.send_text(alice, room, "one")
    first = sync(matrix, bob, since=since)  # plain statements, counted once
    second = sync(matrix, bob, since=since)  # the same statements again: prepared, then EXECUTEd
    third = sync(matrix, bob, since=since)
    assert timeline_bodies(first, room) == ["one"]
    for body in (second, third):
        assert body["next_batch"] == first["next_batch"]
        assert _stable(body["rooms"]) == _stable(first["rooms"])  # (but for "age")
    assert len(_prepared_here()) >= 4  # head, account data, memberships, timeline...


@pytest.mark.django_db(transaction=True)
def test_a_statement_postgresql_cannot_prepare_runs_plain(fresh: None) -> None:
    untyped = "SELECT %s + %s"  # "operator is not unique: unknown + unknown": PREPARE fails
    assert [fetch_one(untyped, [1, 2]) for _ in range(3)] == [(3,)] * 3
    assert untyped in PreparedStatements._unpreparable
    assert not any(text.startswith("SELECT $1") for text in _prepared_here())


@pytest.mark.django_db(transaction=True)
def test_a_statement_marked_planned_each_time_is_never_prepared(fresh: None) -> None:
    sql = f"SELECT COUNT(*) FROM accounts_user WHERE id > %s{PLANNED_EACH_TIME}"
    assert [fetch_one(sql, [0]) for _ in range(3)] == [(0,)] * 3
    assert not _prepared_here()


@pytest.mark.django_db(transaction=True)
def test_statements_the_server_forgot_run_plain_and_are_prepared_again(fresh: None) -> None:
    sql = "SELECT COUNT(*) FROM accounts_user WHERE id > %s"
    assert fetch_one(sql, [0]) == fetch_one(sql, [0])  # the second one prepared it
    assert _prepared_here()
    with connection.cursor() as cur:
        cur.cursor.execute("DEALLOCATE ALL")  # behind the registry's back
    assert fetch_one(sql, [0]) == (0,)
    fetch_one(sql, [0])
    assert _prepared_here()  # prepared anew


@pytest.mark.django_db(transaction=True)
def test_nothing_new_is_prepared_inside_a_transaction(fresh: None) -> None:
    sql = "SELECT COUNT(*) FROM accounts_user WHERE id > %s"
    with transaction.atomic():
        for _ in range(3):
            assert fetch_one(sql, [0]) == (0,)
        assert not _prepared_here()
    for _ in range(2):
        fetch_one(sql, [0])
    assert _prepared_here()
    with transaction.atomic():  # prepared before: used inside it too
        assert run_batch([(sql, [0]), (sql, [-1])]) == [[(0,)], [(0,)]]


@pytest.mark.django_db(transaction=True)
def test_off_prepares_nothing(settings: Any) -> None:
    settings.MATRIX = {**settings.MATRIX, "DB_PREPARE": False}
    _forget_everything()
    for _ in range(3):
        assert fetch_one("SELECT COUNT(*) FROM accounts_user WHERE id > %s", [0]) == (0,)
    assert not _prepared_here()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value",
    [
        0, -3, 2**62, "plain", "it's", "back\\slash", "é ü", "", None, True, False,
        ["!room:a", "!b-c_d"], ["null"], ["NULL"], ["a b"], ["a,b"], ["x{"], ['q"'], ["é"], [], [1, 2],
        ["a,b", "c"], ["a", "b,c"], ["x", "NULL"], ["Null", "nullx", "xnull"], ["a", ""], ["", "a"],
    ],
)
def test_a_literal_means_what_psycopg_would_send(value: Any) -> None:
    with connection.cursor() as cur:
        mine = PreparedStatements.of(connection, cur)._literal(value)
        theirs = cur.cursor.mogrify("%s", (value,))
        cast = "text[]" if isinstance(value, list) else "text"
        cur.execute(f"SELECT ({mine})::{cast} IS NOT DISTINCT FROM ({theirs})::{cast}")
        assert cur.fetchone() == (True,), (mine, theirs)

