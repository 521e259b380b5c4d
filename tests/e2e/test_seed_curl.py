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


def test_seed_curl_rooms_and_events(live_server_url: str) -> None:
    """The seed's "Communicating", "Users and rooms" and "Getting events" sections, as written
    (curl -d sends a form content type; IDs are given with '!' percent-encoded, ':' left raw)."""
    base = f"http://localhost:{urlsplit(live_server_url).port}/_matrix/client/r0"

    def register(name: str) -> str:
        status, body = curl(
            "-XPOST", "-d", f'{{"username":"{name}", "password":"wordpass", "auth": {{"type":"m.login.dummy"}}}}',
            f"{base}/register",
        )
        assert status == 200, body
        return body["access_token"]

    me, friend, stranger = register("seeduser"), register("myfriend"), register("stranger")

    status, created = curl("-XPOST", "-d", '{"room_alias_name":"tutorial"}', f"{base}/createRoom?access_token={me}")
    assert status == 200, created
    assert created["room_alias"] == "#tutorial:localhost"
    room_id = created["room_id"]
    room_path = "%21" + room_id[1:]

    status, sent = curl(
        "-XPOST", "-d", '{"msgtype":"m.text", "body":"hello"}',
        f"{base}/rooms/{room_path}/send/m.room.message?access_token={me}",
    )
    assert status == 200, sent
    assert sent["event_id"].startswith("$")

    status, invited = curl(
        "-XPOST", "-d", '{"user_id":"@myfriend:localhost"}', f"{base}/rooms/{room_path}/invite?access_token={me}"
    )
    assert status == 200, invited
    status, joined = curl("-XPOST", "-d", "{}", f"{base}/rooms/{room_path}/join?access_token={friend}")
    assert status == 200, joined
    assert joined["room_id"] == room_id
    # Repeatedly joining a room does nothing.
    status, _ = curl("-XPOST", "-d", "{}", f"{base}/rooms/{room_path}/join?access_token={friend}")
    assert status == 200

    # Joining via the alias: the room is invite-only (private preset), so a stranger is refused;
    # once it is public, the alias works.
    status, refused = curl("-XPOST", "-d", "{}", f"{base}/join/%23tutorial:localhost?access_token={stranger}")
    assert status == 403 and refused["errcode"] == "M_FORBIDDEN", refused
    status, _ = curl(
        "-XPUT", "-d", '{"join_rule":"public"}', f"{base}/rooms/{room_path}/state/m.room.join_rules?access_token={me}"
    )
    assert status == 200
    status, via_alias = curl("-XPOST", "-d", "{}", f"{base}/join/%23tutorial:localhost?access_token={stranger}")
    assert status == 200 and via_alias["room_id"] == room_id, via_alias

    # Getting events: a full sync, then the seed's filtered one.
    status, synced = curl(f"{base}/sync?access_token={friend}")
    assert status == 200, synced
    timeline = synced["rooms"]["join"][room_id]["timeline"]["events"]
    assert "hello" in [e["content"].get("body") for e in timeline]
    status, filtered = curl("-G", f"{base}/sync", "--data-urlencode", 'filter={"room":{"timeline":{"limit":1}}}',
                            "--data-urlencode", f"access_token={friend}")
    assert status == 200, filtered
    assert len(filtered["rooms"]["join"][room_id]["timeline"]["events"]) == 1
