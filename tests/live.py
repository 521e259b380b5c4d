"""Run the real homeserver as separate OS processes, for end-to-end tests.

``live_server()`` gives each run its own database and data directory, migrates it with
``manage.py migrate`` and starts one or more ``daphne`` workers on it, exactly as ``scripts/serve``
would (``DJANGO_SETTINGS_MODULE=matrixsrv.settings``, configuration only through environment
variables), except that rate limiting is off and the server name is ``localhost``:

* database: when the test run's ``DATABASE_URL`` is PostgreSQL, a fresh database
  ``matrixsrv_live_<random>`` on the same server (``CREATE DATABASE``; ``DROP DATABASE ... WITH
  (FORCE)`` at teardown); otherwise a fresh SQLite file in a temporary directory.
* workers: ``workers=N`` starts N daphne processes sharing that database, each on its own free port.
  The parent opens each listening socket and hands it to daphne (``--fd``), so there is no race for
  the port. Pass ``redis_url=`` to give them Redis (channel layer and cache), which several workers
  need to wake each other's ``/sync``; without it the test run's ``REDIS_URL`` is *not* inherited.
* teardown: each worker is stopped by its pid (SIGTERM, then SIGKILL after a timeout).

The pytest fixtures built on this live in ``tests/e2e/conftest.py``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
VERSIONS_PATH = "/_matrix/client/versions"
POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql", "postgis")


@dataclass
class Worker:
    """One daphne process of a live server."""

    index: int
    url: str
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """What the worker printed so far (stdout and stderr, including daphne's access log)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM this worker's pid; SIGKILL it if it hasn't exited after ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


@dataclass
class LiveServer:
    """A running homeserver: ``workers`` share ``database_url``; ``url`` is the first worker's."""

    workers: list[Worker]
    database_url: str
    data_dir: Path
    env: dict[str, str] = field(repr=False)
    server_name: str = "localhost"

    @property
    def url(self) -> str:
        return self.workers[0].url

    @property
    def urls(self) -> list[str]:
        return [w.url for w in self.workers]

    def logs(self) -> str:
        return "\n".join(f"--- worker {w.index} (pid {w.pid}) ---\n{w.log()}" for w in self.workers)


def _free_listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def _is_postgres(url: str) -> bool:
    return urlsplit(url).scheme in POSTGRES_SCHEMES


@contextmanager
def _fresh_postgres_database(base_url: str) -> Iterator[str]:
    """CREATE a new database on the server ``base_url`` points at; yield its URL; DROP it after."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    params = dj_database_url.parse(base_url)
    connect_kwargs = {
        "host": params.get("HOST") or None,
        "port": params.get("PORT") or None,
        "user": params.get("USER") or None,
        "password": params.get("PASSWORD") or None,
        "autocommit": True,
        "connect_timeout": 10,
    }

    def admin_connection() -> psycopg.Connection:
        # The maintenance database first (the one being dropped must not be ours), else the
        # database the URL names, as Django does for its test database.
        try:
            return psycopg.connect(dbname="postgres", **connect_kwargs)
        except psycopg.OperationalError:
            return psycopg.connect(dbname=params["NAME"], **connect_kwargs)

    name = f"matrixsrv_live_{secrets.token_hex(6)}"
    with admin_connection() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        parts = urlsplit(base_url)
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with admin_connection() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _wait_until_ready(worker: Worker, deadline: float) -> None:
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if not worker.is_running():
            raise RuntimeError(
                f"live server worker {worker.index} exited with code {worker.process.returncode} "
                f"before answering:\n{worker.log()}"
            )
        try:
            with urllib.request.urlopen(worker.url + VERSIONS_PATH, timeout=2) as resp:
                if resp.status == 200 and "versions" in json.load(resp):
                    return
                last_error = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last_error = repr(exc)
        time.sleep(0.1)
    raise RuntimeError(
        f"live server worker {worker.index} did not answer {VERSIONS_PATH} in time ({last_error}):\n"
        f"{worker.log()}"
    )


@contextmanager
def live_server(
    *,
    workers: int = 1,
    redis_url: str | None = None,
    database_url: str | None = None,
    server_name: str = "localhost",
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 60.0,
) -> Iterator[LiveServer]:
    """Start the homeserver in ``workers`` daphne processes on a fresh database; stop it after.

    Args:
        workers: how many daphne processes share the database.
        redis_url: REDIS_URL for the workers (channel layer and cache); None: none (embedded mode).
        database_url: the server to make the fresh database on; default: the test run's
            DATABASE_URL (PostgreSQL) or SQLite.
        server_name: MATRIX_SERVER_NAME.
        env: further environment variables for the server (they win over the defaults here).
        startup_timeout: seconds to wait for every worker to answer /versions.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    base_url = database_url if database_url is not None else os.environ.get("DATABASE_URL", "")
    with ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="matrixsrv-live-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        data_dir = tmp / "data"
        data_dir.mkdir()
        if base_url and _is_postgres(base_url):
            db_url = stack.enter_context(_fresh_postgres_database(base_url))
        else:
            db_url = f"sqlite:///{tmp / 'matrixsrv.sqlite3'}"

        sockets = [_free_listening_socket() for _ in range(workers)]
        for sock in sockets:  # the workers hold their own copies once started
            stack.callback(sock.close)
        urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in sockets]

        child_env = dict(os.environ)
        child_env.pop("REDIS_URL", None)
        child_env.update(
            {
                "DJANGO_SETTINGS_MODULE": "matrixsrv.settings",
                "DATABASE_URL": db_url,
                "MATRIX_DATA_DIR": str(data_dir),
                "MATRIX_SERVER_NAME": server_name,
                "MATRIX_RATE_LIMIT": "off",
                "MATRIX_PUBLIC_BASEURL": urls[0] + "/",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if redis_url:
            child_env["REDIS_URL"] = redis_url
        child_env.update(env or {})

        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            check=False,
            cwd=REPO,
            env=child_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"manage.py migrate failed:\n{migrate.stdout}\n{migrate.stderr}")

        started: list[Worker] = []
        # Registered before any worker starts: ExitStack runs this before dropping the database.
        stack.callback(lambda: [w.stop() for w in started])
        for index, (sock, url) in enumerate(zip(sockets, urls)):
            log_path = tmp / f"worker{index}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "daphne",
                        "--fd",
                        str(sock.fileno()),
                        "matrixsrv.asgi:application",
                    ],
                    cwd=REPO,
                    env=child_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(sock.fileno(),),
                )
            sock.close()
            started.append(Worker(index=index, url=url, process=process, log_path=log_path))

        deadline = time.monotonic() + startup_timeout
        for worker in started:
            _wait_until_ready(worker, deadline)
        yield LiveServer(
            workers=started, database_url=db_url, data_dir=data_dir, env=child_env, server_name=server_name
        )
