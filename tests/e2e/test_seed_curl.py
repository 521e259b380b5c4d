"""The README's curl walk-through (the seed's three commands), run with curl against the live server."""

from __future__ import annotations

import json
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]


def curl(*args: str) -> tuple[int, dict]:
    """Run curl with the README's arguments; return (HTTP status, JSON body)."""
    out = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    body, _, status = out.rpartition("\n")
    return int(status), json.loads(body)


def test_seed_curl_walkthrough(live_server_url: str) -> None:
    # The README's commands, with localhost:8008 replaced by the live server's port.
    base = f"http://localhost:{urlsplit(live_server_url).port}"

    status, registered = curl(
        "-XPOST",
        "-d",
        '{"username":"example", "password":"wordpass", "auth": {"type":"m.login.dummy"}}',
        f"{base}/_matrix/client/r0/register",
    )
    assert status == 200, registered
    assert registered["user_id"] == "@example:localhost"
    assert registered["home_server"] == "localhost"
    assert isinstance(registered["access_token"], str) and registered["access_token"]
    assert isinstance(registered["device_id"], str) and registered["device_id"]

    status, flows = curl("-XGET", f"{base}/_matrix/client/r0/login")
    assert status == 200, flows
    assert "m.login.password" in [flow["type"] for flow in flows["flows"]]

    status, login = curl(
        "-XPOST",
        "-d",
        '{"type":"m.login.password", "user":"example", "password":"wordpass"}',
        f"{base}/_matrix/client/r0/login",
    )
    assert status == 200, login
    assert login["user_id"] == "@example:localhost"
    assert login["home_server"] == "localhost"
    assert isinstance(login["access_token"], str) and login["access_token"]
    assert login["access_token"] != registered["access_token"]
    assert login["device_id"] != registered["device_id"]
