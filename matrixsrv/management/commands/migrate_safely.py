"""``manage.py migrate_safely``: apply migrations when several workers may start at the same moment.

Every worker start (scripts/serve, deploy/docker-entrypoint.sh, the compose file's migrate service)
runs this instead of ``migrate``. On PostgreSQL it takes a session-level advisory lock
(``pg_advisory_lock``) on a connection of its own, so exactly one process applies the migrations
while the others wait for it, then find nothing left to do. The lock lives on a separate connection,
not Django's, so nothing Django does to its own connection during ``migrate`` can drop it; and it
ends with the process, so a crashed migrator never leaves it held.

On SQLite (the embedded mode, normally one process) an exclusive ``flock`` on a file beside the
database does the same for processes on one machine.

Exit status: 0 when the schema is current afterwards; 1 when the lock wasn't had within
``--timeout`` seconds or ``migrate`` failed (the worker must then not start: its /ready and every
request would say the schema is behind anyway, matrixsrv/health.py). ``--check`` applies nothing:
exit 0 if current, 1 if migrations are pending.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from matrixsrv.health import pending_migrations

# pg_advisory_lock takes a bigint; a fixed key derived from a name nobody else would use.
ADVISORY_LOCK_KEY = zlib.crc32(b"matrixsrv.migrate_safely")
POLL_S = 0.2


class Command(BaseCommand):
    help = ("Apply migrations under a lock (PostgreSQL advisory lock, or a file lock on SQLite), so "
            "workers starting together never race; the others wait and then find the schema current.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--timeout", type=float, default=600.0,
                            help="seconds to wait for another process's migrations (default %(default)s)")
        parser.add_argument("--check", action="store_true",
                            help="apply nothing: exit 1 if migrations are pending, 0 if the schema is current")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["database"]
        if options["check"]:
            pending = pending_migrations(alias)
            if pending:
                raise CommandError(f"{len(pending)} migration(s) not applied: {', '.join(pending)}")
            self.stdout.write("schema is current")
            return
        with self._lock(alias, options["timeout"]):
            pending = pending_migrations(alias)
            if not pending:
                self.stdout.write("schema is current: nothing to apply")
                return
            self.stdout.write(f"applying {len(pending)} migration(s)")
            call_command("migrate", database=alias, interactive=False, verbosity=options["verbosity"],
                         stdout=self.stdout, stderr=self.stderr)
            left = pending_migrations(alias)
            if left:
                raise CommandError(f"migrate left {len(left)} migration(s) unapplied: {', '.join(left)}")
            self.stdout.write(f"applied {len(pending)} migration(s)")

    @contextlib.contextmanager
    def _lock(self, alias: str, timeout: float) -> Iterator[None]:
        vendor = connections[alias].vendor
        if vendor == "postgresql":
            with self._advisory_lock(alias, timeout):
                yield
        elif vendor == "sqlite":
            with self._file_lock(alias, timeout):
                yield
        else:  # no cross-process lock known for this backend: migrate as Django would
            yield

    @contextlib.contextmanager
    def _advisory_lock(self, alias: str, timeout: float) -> Iterator[None]:
        import psycopg

        params = connections[alias].settings_dict
        conn = psycopg.connect(
            dbname=params["NAME"], user=params.get("USER") or None, password=params.get("PASSWORD") or None,
            host=params.get("HOST") or None, port=params.get("PORT") or None, autocommit=True,
            connect_timeout=30,
        )
        try:
            self._wait(lambda: conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()[0],
                       timeout, "PostgreSQL advisory lock")
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        finally:
            conn.close()

    @contextlib.contextmanager
    def _file_lock(self, alias: str, timeout: float) -> Iterator[None]:
        name = str(connections[alias].settings_dict["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            yield  # a private database: nobody to race with
            return
        path = Path(f"{name}.migrate.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            def try_lock() -> bool:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    return False

            self._wait(try_lock, timeout, f"file lock {path}")
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _wait(self, try_lock: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        said = False
        while not try_lock():
            if not said:
                self.stdout.write(f"waiting for another process's migrations ({what})")
                said = True
            if time.monotonic() >= deadline:
                raise CommandError(f"gave up waiting for the {what} after {timeout:g} s")
            time.sleep(POLL_S)
