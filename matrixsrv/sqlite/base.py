"""SQLite backend for the embedded mode: write transactions queue on a process-wide lock.

With ``transaction_mode=IMMEDIATE`` every transaction takes SQLite's write lock when it begins, and
a connection that finds it taken sleeps in SQLite's busy handler with growing back-offs (up to
100 ms per try), so under concurrent writers the wait is neither first-come-first-served nor short:
the bench saw send p99 ~1 s on SQLite against ~0.5 s on PostgreSQL. The embedded mode is one
process, so a Python lock taken just before ``BEGIN IMMEDIATE`` and released at COMMIT/ROLLBACK
queues writers in the process instead, and wakes the next one the moment the lock is free.
"""

from __future__ import annotations

import threading

from django.db import OperationalError
from django.db.backends.sqlite3 import base

_WRITE_LOCK = threading.Lock()


class DatabaseWrapper(base.DatabaseWrapper):
    _holds_write_lock = False

    def _start_transaction_under_autocommit(self) -> None:
        timeout = float(self.settings_dict.get("OPTIONS", {}).get("timeout", 30))
        if not self._holds_write_lock:
            if not _WRITE_LOCK.acquire(timeout=timeout):
                raise OperationalError("database is locked (waited for the process's write lock)")
            self._holds_write_lock = True
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_write_lock()
            raise

    def _release_write_lock(self) -> None:
        if self._holds_write_lock:
            self._holds_write_lock = False
            _WRITE_LOCK.release()

    def _commit(self) -> None:
        try:
            super()._commit()
        finally:
            self._release_write_lock()

    def _rollback(self) -> None:
        try:
            super()._rollback()
        finally:
            self._release_write_lock()

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self._release_write_lock()
