"""A test driver for the client API through the real URL routes (Synapse's RestHelper idea).

IDs in paths are percent-encoded as real clients send them, so routing bugs show up in tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from django.test import Client


@dataclass
class TestUser:
    __test__ = False  # not a test class, whatever its name (pytest collects Test* from importing modules)

    user_id: str
    access_token: str
    device_id: str
    password: str


def q(value: str) -> str:
    """Percent-encode one path segment (room IDs, aliases, user IDs, event IDs...)."""
    return quote(value, safe="")


def assert_matrix_error(response: Any, status: int, errcode: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert body["errcode"] == errcode, body
    assert isinstance(body.get("error"), str), body
    return body


class MatrixClient:
    """Wraps Django's test client. ``prefix`` is "v3" or "r0"."""

    def __init__(self, prefix: str = "v3") -> None:
        self.http = Client()
        self.prefix = prefix

    def url(self, path: str, **query: Any) -> str:
        base = path if path.startswith("/") else f"/_matrix/client/{self.prefix}/{path}"
        if query:
            base += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        return base

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | TestUser | None = None,
        expect: int | None = 200,
        query: dict[str, Any] | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {}
        if isinstance(token, TestUser):
            token = token.access_token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body) if body is not None else "")
        response = self.http.generic(
            method, self.url(path, **(query or {})), data=data, content_type=content_type, headers=headers
        )
        if expect is not None:
            assert response.status_code == expect, (method, path, response.status_code, response.content[:800])
        return response

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body if body is not None else {}, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, body if body is not None else {}, **kw)

    def delete(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("DELETE", path, body, **kw)

    # -- accounts ---------------------------------------------------------------------------------
    def register(self, username: str, password: str = "correct horse", **extra: Any) -> TestUser:
        body = {"username": username, "password": password, "auth": {"type": "m.login.dummy"}, **extra}
        data = self.post("register", body).json()
        return TestUser(data["user_id"], data["access_token"], data["device_id"], password)

    def login(self, user: str, password: str, **extra: Any) -> dict[str, Any]:
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}
        return self.post("login", {**body, **extra}).json()

    def whoami(self, user: TestUser | str, expect: int = 200) -> Any:
        return self.get("account/whoami", token=user, expect=expect)

    # -- rooms and events (added with the room/event API tests) -----------------------------------
    _txn_counter = 0

    def next_txn_id(self) -> str:
        MatrixClient._txn_counter += 1
        return f"txn{MatrixClient._txn_counter}"

    def create_room(self, user: TestUser, **body: Any) -> str:
        """POST /createRoom; returns the new room's ID."""
        return self.post("createRoom", body, token=user).json()["room_id"]

    def send(self, user: TestUser, room_id: str, event_type: str, content: dict[str, Any],
             txn_id: str | None = None, expect: int | None = 200) -> Any:
        """PUT /rooms/{roomId}/send/{eventType}/{txnId}; the JSON body on 200, else the response."""
        txn_id = txn_id or self.next_txn_id()
        resp = self.put(f"rooms/{q(room_id)}/send/{q(event_type)}/{q(txn_id)}", content, token=user,
                        expect=expect)
        return resp.json() if resp.status_code == 200 and expect == 200 else resp

    def send_text(self, user: TestUser, room_id: str, body: str, txn_id: str | None = None) -> str:
        content = {"msgtype": "m.text", "body": body}
        return self.send(user, room_id, "m.room.message", content, txn_id)["event_id"]

    def state_path(self, room_id: str, event_type: str, state_key: str = "") -> str:
        return f"rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}"

    def send_state(self, user: TestUser, room_id: str, event_type: str, content: dict[str, Any],
                   state_key: str = "", expect: int | None = 200) -> Any:
        """PUT /rooms/{roomId}/state/{eventType}/{stateKey}; the event ID on 200, else the response."""
        resp = self.put(self.state_path(room_id, event_type, state_key), content, token=user, expect=expect)
        return resp.json()["event_id"] if resp.status_code == 200 and expect == 200 else resp

    def get_state(self, user: TestUser, room_id: str, event_type: str, state_key: str = "",
                  expect: int | None = 200, **query: Any) -> Any:
        resp = self.get(self.state_path(room_id, event_type, state_key), token=user, expect=expect,
                        query=query or None)
        return resp.json() if resp.status_code == 200 and expect == 200 else resp

    def room_state(self, user: TestUser, room_id: str) -> list[dict[str, Any]]:
        return self.get(f"rooms/{q(room_id)}/state", token=user).json()

    def join(self, user: TestUser, room_id_or_alias: str, expect: int | None = 200, **body: Any) -> Any:
        """POST /join/{roomIdOrAlias}"""
        return self.post(f"join/{q(room_id_or_alias)}", body, token=user, expect=expect)

    def invite(self, user: TestUser, room_id: str, target: str, expect: int | None = 200, **body: Any) -> Any:
        return self.post(f"rooms/{q(room_id)}/invite", {"user_id": target, **body}, token=user, expect=expect)

    def leave(self, user: TestUser, room_id: str, expect: int | None = 200, **body: Any) -> Any:
        return self.post(f"rooms/{q(room_id)}/leave", body, token=user, expect=expect)

    def kick(self, user: TestUser, room_id: str, target: str, expect: int | None = 200, **body: Any) -> Any:
        return self.post(f"rooms/{q(room_id)}/kick", {"user_id": target, **body}, token=user, expect=expect)

    def ban(self, user: TestUser, room_id: str, target: str, expect: int | None = 200, **body: Any) -> Any:
        return self.post(f"rooms/{q(room_id)}/ban", {"user_id": target, **body}, token=user, expect=expect)

    def unban(self, user: TestUser, room_id: str, target: str, expect: int | None = 200, **body: Any) -> Any:
        return self.post(f"rooms/{q(room_id)}/unban", {"user_id": target, **body}, token=user, expect=expect)

    def redact(self, user: TestUser, room_id: str, event_id: str, txn_id: str | None = None,
               expect: int | None = 200, **body: Any) -> Any:
        txn_id = txn_id or self.next_txn_id()
        path = f"rooms/{q(room_id)}/redact/{q(event_id)}/{q(txn_id)}"
        resp = self.put(path, body, token=user, expect=expect)
        return resp.json()["event_id"] if resp.status_code == 200 and expect == 200 else resp
