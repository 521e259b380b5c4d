"""The deployment files agree with the server's settings, and the nginx configuration renders and
parses (``nginx -t``, when nginx is installed). Quick: no server is started."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from matrixsrv import config
from tests.tools import skip_without

REPO = Path(__file__).resolve().parents[2]
NGINX_CONF = REPO / "deploy" / "nginx.conf"
RENDER = REPO / "deploy" / "render_nginx_conf.py"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def _location(text: str, header: str) -> str:
    block = text[text.index(header):]
    return block[: block.index("}")]


def _seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)(s?)", value.strip())
    assert match, value
    return int(match[1])


def test_sync_is_unbuffered_and_waits_longer_than_the_server_cap() -> None:
    text = NGINX_CONF.read_text()
    sync = _location(text, "location ~ ^/_matrix/client/[^/]+/sync$")
    assert "proxy_buffering off;" in sync
    read_timeout = _seconds(re.search(r"proxy_read_timeout\s+([^;]+);", sync)[1])
    assert read_timeout >= config.get_int("MATRIX_SYNC_TIMEOUT_CAP_MS") / 1000 + 30
    # The pattern catches every prefix's /sync and nothing longer.
    pattern = re.compile(r"^/_matrix/client/[^/]+/sync$")
    assert all(pattern.match(f"/_matrix/client/{p}/sync") for p in ("v3", "r0"))
    assert not pattern.match("/_matrix/client/v3/sync/extra")


def test_body_limit_matches_the_server_and_answers_like_it() -> None:
    text = NGINX_CONF.read_text()
    size = re.search(r"client_max_body_size\s+(\d+)([km]?);", text)
    limit = int(size[1]) * {"": 1, "k": 1024, "m": 1024 * 1024}[size[2]]
    assert limit == int(config.SETTINGS["MATRIX_MAX_BODY_BYTES"].default)
    assert "error_page 413 = @too_large;" in text and '"errcode":"M_TOO_LARGE"' in text


def test_forwarded_headers_are_set_by_the_proxy_and_trusted_one_hop() -> None:
    text = NGINX_CONF.read_text()
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in text
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in text
    compose = (REPO / "docker-compose.yml").read_text()
    assert 'MATRIX_TRUSTED_PROXY_COUNT: "1"' in compose
    assert "MATRIX_TRUSTED_PROXY_COUNT=1" in (REPO / "deploy" / "matrixsrv.env.example").read_text()


def test_every_worker_start_migrates_safely() -> None:
    assert "manage.py migrate_safely" in (REPO / "scripts" / "serve").read_text()
    assert "manage.py migrate_safely" in (REPO / "deploy" / "docker-entrypoint.sh").read_text()
    assert "manage.py migrate_safely" in (REPO / "deploy" / "matrixsrv@.service").read_text()


def _render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RENDER), *args], capture_output=True, text=True, timeout=30)


def test_render_fills_in_the_workers_listen_address_and_static_root(tmp_path: Path) -> None:
    result = _render("--upstream", "127.0.0.1:8081", "--upstream", "127.0.0.1:8082", "--listen", "127.0.0.1:9000",
                     "--static-root", str(tmp_path / "static"), "--runtime-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert re.findall(r"^\s*server (\S+);", text, re.M) == ["127.0.0.1:8081", "127.0.0.1:8082"]
    assert re.search(r"^\s*listen 127\.0\.0\.1:9000;", text, re.M)
    assert f"alias {tmp_path / 'static'}/;" in text
    assert f"pid {tmp_path}/nginx.pid;" in text and f"proxy_temp_path {tmp_path}/proxy_temp;" in text
    assert not re.search(r"# render: \w+\s*$", text, re.M)  # every marker was replaced
    assert _render("--static-root", "/x").returncode != 0  # no worker: refused


def test_the_rendered_configuration_parses(tmp_path: Path) -> None:
    if NGINX is None:
        skip_without("nginx", "nginx is not installed")
    (tmp_path / "static").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(_render("--upstream", "127.0.0.1:8081", "--listen", "127.0.0.1:9000", "--static-root",
                            str(tmp_path / "static"), "--runtime-dir", str(tmp_path)).stdout)
    result = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
