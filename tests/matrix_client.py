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
