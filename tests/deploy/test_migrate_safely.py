"""``manage.py migrate_safely``: several workers starting at once apply the migrations exactly once.

The concurrency test starts real processes on a fresh database (PostgreSQL: a new database on the
test server, the advisory lock; SQLite: a new file, the file lock) and checks that every process
succeeded, exactly one applied the migrations, and django_migrations records each one once
(it has no unique constraint: two racing migrators would leave duplicates, or fail).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from contextlib import ExitStack
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from matrixsrv import health
from tests.live import REPO, _fresh_postgres_database, _is_postgres

PROCESSES = 3


@pytest.mark.django_db
def test_on_a_current_schema_it_applies_nothing_and_check_passes() -> None:
    out = StringIO()
    call_command("migrate_safely", stdout=out)
    assert "nothing to apply" in out.getvalue()
    out = StringIO()
    call_command("migrate_safely", "--check", stdout=out)
    assert "schema is current" in out.getvalue()


@pytest.mark.django_db
def test_check_fails_when_migrations_are_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    from matrixsrv.management.commands import migrate_safely

    monkeypatch.setattr(migrate_safely, "pending_migrations", lambda alias="default": ["rooms.9999_future"])
    with pytest.raises(CommandError, match="rooms.9999_future"):
        call_command("migrate_safely", "--check", stdout=StringIO())


def _applied_rows(db_url: str) -> list[tuple[str, str]]:
    if _is_postgres(db_url):
        import dj_database_url
        import psycopg

        p = dj_database_url.parse(db_url)
        with psycopg.connect(dbname=p["NAME"], user=p.get("USER") or None, password=p.get("PASSWORD") or None,
                             host=p.get("HOST") or None, port=p.get("PORT") or None) as conn:
            return conn.execute("SELECT app, name FROM django_migrations").fetchall()
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
        return conn.execute("SELECT app, name FROM django_migrations").fetchall()


@pytest.mark.slow
def test_workers_starting_together_apply_the_migrations_once() -> None:
    base_url = os.environ.get("DATABASE_URL", "")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="matrixsrv-migrate-")))
        if base_url and _is_postgres(base_url):
            db_url = stack.enter_context(_fresh_postgres_database(base_url))
        else:
            db_url = f"sqlite:///{tmp / 'matrixsrv.sqlite3'}"
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "matrixsrv.settings", "DATABASE_URL": db_url,
               "MATRIX_DATA_DIR": str(tmp / "data"), "PYTHONUNBUFFERED": "1"}
        env.pop("REDIS_URL", None)
        procs = [
            subprocess.Popen([sys.executable, "manage.py", "migrate_safely", "--timeout", "240"], cwd=REPO,
                             env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
            for _ in range(PROCESSES)
        ]
        outputs = []
        try:
            for proc in procs:
                out, _ = proc.communicate(timeout=300)
                outputs.append((proc.returncode, out))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        report = "\n".join(f"--- exit {rc} ---\n{out[-3000:]}" for rc, out in outputs)
        assert all(rc == 0 for rc, _ in outputs), report
        appliers = [out for _, out in outputs if "\napplied " in f"\n{out}"]
        assert len(appliers) == 1, report
        assert sum("nothing to apply" in out for _, out in outputs) == PROCESSES - 1, report

        rows = _applied_rows(db_url)
        duplicates = {row: n for row, n in Counter(rows).items() if n > 1}
        assert not duplicates, duplicates
        applied_count = int(appliers[0].split("applied ")[-1].split(" ")[0])
        assert applied_count > 0 and len(rows) >= applied_count

        check = subprocess.run([sys.executable, "manage.py", "migrate_safely", "--check"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=120, check=False)
        assert check.returncode == 0, check.stdout + check.stderr


def test_pending_migrations_is_empty_on_the_test_database(db) -> None:  # type: ignore[no-untyped-def]
    assert health.pending_migrations() == []
