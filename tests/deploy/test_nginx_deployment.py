"""The deployment of docker-compose.yml, without Docker: nginx with deploy/nginx.conf in front of
several daphne workers on PostgreSQL and Redis, driven through the proxy only.

nginx (Debian's package; .ci/run installs it) runs as a non-daemon child with the repository's
configuration rendered by deploy/render_nginx_conf.py into a temporary directory: free port,
the workers started by tests/live.py as its upstream, collectstatic's output as /static/. The
workers run as in production behind a proxy: MATRIX_TRUSTED_PROXY_COUNT=1, MATRIX_SERVE_STATIC=off,
and MATRIX_WORKER_NAME=worker-{pid}, so each response names the worker that answered it
(X-Matrixsrv-Worker).

Every wait is bounded; nginx and the workers are stopped by their pids.
PostgreSQL and Redis only (skipped on SQLite); skipped when nginx isn't installed.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest

from tests.live import POSTGRES_SCHEMES, REPO, LiveServer, live_server
from tests.multiprocess.test_cross_worker_wakeup import redis_database
from tests.tools import skip_without

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
WORKERS = 2
LONG_POLL_MS = 20_000
SETTLE_S = 0.5  # time given to a long-poll to reach its wait before the send that should wake it
WORKER_HEADER = "X-Matrixsrv-Worker"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.deploy,
    pytest.mark.redis,
    pytest.mark.skipif(
        urlsplit(os.environ.get("DATABASE_URL", "")).scheme not in POSTGRES_SCHEMES,
        reason="several workers need PostgreSQL (DATABASE_URL=postgres://...)",
    ),
]


# -- a small HTTP client that keeps headers and can pick its source address ----------------------------

@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def worker(self) -> str | None:
        return self.headers.get(WORKER_HEADER)


def request(base: str, method: str, path: str, body: Any = None, *, token: str | None = None,
            headers: dict[str, str] | None = None, raw: bytes | None = None, timeout: float = 30,
            source_ip: str | None = None) -> Response:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout,
                                      source_address=(source_ip, 0) if source_ip else None)
    try:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers=all_headers)
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def ok(response: Response, status: int = 200) -> Response:
    assert response.status == status, (response.status, response.body[:500])
    return response


# -- nginx -----------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proxy:
    url: str
    process: subprocess.Popen
    log_path: Path
    static_root: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _collectstatic(static_root: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=REPO, env={**env, "MATRIX_STATIC_ROOT": str(static_root)}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def deployment() -> Iterator[tuple[Proxy, LiveServer]]:
    if NGINX is None:
        skip_without("nginx", "nginx is not installed (apt-get install nginx)")
    """Workers on PostgreSQL + Redis, nginx in front of them; both stopped by pid afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="matrixsrv-nginx-"))
    os.chmod(tmp, 0o755)  # nginx's worker processes (an unprivileged user under root) read /static/ here
    env = {"MATRIX_TRUSTED_PROXY_COUNT": "1", "MATRIX_SERVE_STATIC": "off",
           "MATRIX_WORKER_NAME": "worker-{pid}"}
    try:
        with redis_database() as redis_url, live_server(workers=WORKERS, redis_url=redis_url, env=env) as server:
            static_root = tmp / "static"
            _collectstatic(static_root, server.env)
            port = _free_port()
            rendered = subprocess.run(
                [sys.executable, str(REPO / "deploy" / "render_nginx_conf.py"),
                 *(arg for url in server.urls for arg in ("--upstream", urlsplit(url).netloc)),
                 "--listen", f"127.0.0.1:{port}", "--static-root", str(static_root),
                 "--runtime-dir", str(tmp)],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout
            conf = tmp / "nginx.conf"
            conf.write_text(rendered)
            log_path = tmp / "nginx.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [NGINX, "-p", str(tmp), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                )
            proxy = Proxy(f"http://127.0.0.1:{port}", process, log_path, static_root)
            try:
                deadline = time.monotonic() + 20
                while True:
                    assert process.poll() is None, f"nginx exited ({process.returncode}):\n{proxy.log()}"
                    try:
                        if request(proxy.url, "GET", "/health", timeout=2).status == 200:
                            break
                    except OSError:
                        pass
                    assert time.monotonic() < deadline, f"nginx did not answer in time:\n{proxy.log()}"
                    time.sleep(0.1)
                yield proxy, server
            finally:
                process.terminate()  # SIGTERM: nginx's fast shutdown
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _explain(proxy: Proxy, server: LiveServer) -> str:
    return f"--- nginx ---\n{proxy.log()[-4000:]}\n{server.logs()[-8000:]}"


def register(base: str, name: str) -> dict:
    body = {"username": name, "password": "correct horse", "auth": {"type": "m.login.dummy"}}
    return ok(request(base, "POST", "/_matrix/client/v3/register", body)).json()


def sync(base: str, token: str, *, since: str | None = None, timeout_ms: int = 0) -> Response:
    query = {"timeout": timeout_ms, **({"since": since} if since else {})}
    return ok(request(base, "GET", f"/_matrix/client/v3/sync?{urlencode(query)}", token=token,
                      timeout=timeout_ms / 1000 + 30))


def timeline(body: dict, room_id: str) -> list[dict]:
    return body.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {}).get("events", [])


# -- the scenario ----------------------------------------------------------------------------------------

def test_long_poll_on_one_worker_is_woken_by_a_send_through_another(deployment) -> None:
    proxy, server = deployment
    base = proxy.url
    suffix = uuid.uuid4().hex[:8]
    alice, bob = register(base, f"alice{suffix}"), register(base, f"bob{suffix}")
    room_id = ok(request(base, "POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"},
                         token=alice["access_token"])).json()["room_id"]
    ok(request(base, "POST", f"/_matrix/client/v3/join/{quote(room_id)}", {}, token=bob["access_token"]))
    since = sync(base, alice["access_token"]).json()["next_batch"]

    workers_seen: set[str] = set()
    crossed = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Round-robin decides which worker gets each request; repeat until the long-poll and the send
        # landed on different workers a few times (with two workers and nothing else going on, they
        # alternate, so this usually takes one or two rounds). Every round must be woken.
        for attempt in range(8):
            started = time.monotonic()
            poll = pool.submit(sync, base, alice["access_token"], since=since, timeout_ms=LONG_POLL_MS)
            time.sleep(SETTLE_S)
            assert not poll.done(), f"the long-poll answered before anything was sent\n{_explain(proxy, server)}"
            sent = ok(request(base, "PUT", f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/"
                              f"t{attempt}{suffix}", {"msgtype": "m.text", "body": f"hello {attempt}"},
                              token=bob["access_token"]))
            woken = poll.result(timeout=LONG_POLL_MS / 1000 + 10)
            elapsed = time.monotonic() - started
            event_id = sent.json()["event_id"]
            assert elapsed < SETTLE_S + 5, f"not woken: {elapsed:.1f}s\n{_explain(proxy, server)}"
            assert event_id in [e["event_id"] for e in timeline(woken.json(), room_id)]
            since = woken.json()["next_batch"]
            assert sent.worker and woken.worker, "every response names its worker"
            workers_seen |= {sent.worker, woken.worker}
            if sent.worker != woken.worker:
                crossed += 1
                if crossed >= 2:
                    break
    assert crossed >= 2, f"the send and the long-poll never landed on different workers: {workers_seen}"
    assert workers_seen == {f"worker-{w.pid}" for w in server.workers}


def test_admin_is_proxied_and_its_static_files_come_from_nginx(deployment) -> None:
    proxy, _server = deployment
    login = ok(request(proxy.url, "GET", "/admin/login/"))
    assert login.worker, "the admin page was answered by a worker"
    page = login.body.decode()
    assert 'name="csrfmiddlewaretoken"' in page
    assert "/static/admin/css/base.css" in page
    css = ok(request(proxy.url, "GET", "/static/admin/css/base.css"))
    assert css.headers["Content-Type"].startswith("text/css")
    assert css.worker is None, "static files must not reach the workers"
    assert css.body == (proxy.static_root / "admin" / "css" / "base.css").read_bytes()
    # The workers themselves don't serve them (MATRIX_SERVE_STATIC=off): only nginx can have.
    assert request(_server.url, "GET", "/static/admin/css/base.css").status == 404


def test_client_ip_is_the_one_nginx_saw_not_a_forged_header(deployment) -> None:
    proxy, _server = deployment
    user = register(proxy.url, f"carol{uuid.uuid4().hex[:8]}")
    # Connect to nginx from 127.0.0.2 (any 127/8 address is loopback): nginx forwards from 127.0.0.1,
    # so seeing 127.0.0.2 proves the worker read X-Forwarded-For; the forged entry the client put in
    # front of it must be ignored (MATRIX_TRUSTED_PROXY_COUNT=1).
    ok(request(proxy.url, "GET", "/_matrix/client/v3/account/whoami", token=user["access_token"],
               headers={"X-Forwarded-For": "198.51.100.66"}, source_ip="127.0.0.2"))
    devices = ok(request(proxy.url, "GET", "/_matrix/client/v3/devices", token=user["access_token"],
                         headers={"X-Forwarded-For": "198.51.100.66"}, source_ip="127.0.0.2")).json()
    (device,) = [d for d in devices["devices"] if d["device_id"] == user["device_id"]]
    assert device["last_seen_ip"] == "127.0.0.2"


def test_operations_endpoints_through_the_proxy(deployment) -> None:
    proxy, server = deployment
    assert ok(request(proxy.url, "GET", "/health")).json()["status"] == "ok"
    # Readiness and metrics are per worker: not proxied...
    assert request(proxy.url, "GET", "/metrics").status == 404
    assert request(proxy.url, "GET", "/ready").status == 404
    # ...but each worker answers them directly (a loopback scrape, no X-Forwarded-For).
    for worker in server.workers:
        ready = ok(request(worker.url, "GET", "/ready")).json()
        assert ready["checks"] == {"database": "ok", "migrations": "ok", "redis": "ok", "channel_layer": "ok"}
        metrics = ok(request(worker.url, "GET", "/metrics")).body.decode()
        assert "matrixsrv_http_requests_total" in metrics
        assert f'name="worker-{worker.pid}"' in metrics
    # A body over the limit gets the Matrix error from nginx itself, as the workers would give it.
    too_big = request(proxy.url, "POST", "/_matrix/client/v3/createRoom", raw=b"x" * (1024 * 1024 + 1))
    assert too_big.status == 413 and too_big.json()["errcode"] == "M_TOO_LARGE"
    assert request(proxy.url, "GET", "/.well-known/matrix/client").worker  # proxied to a worker
    assert ok(request(proxy.url, "GET", "/_matrix/client/versions")).worker
