"""GET /voip/turnServer (spec voip.yaml): TURN credentials from the configuration (MATRIX_TURN_*),
time-limited through a shared secret as coturn's ``use-auth-secret`` checks them, or static; ``{}``
when no TURN server is configured (Synapse's answer)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import pytest

from matrixsrv import config
from matrixsrv.config import TurnConfig
from tests.matrix_client import MatrixClient, TestUser, assert_matrix_error

pytestmark = pytest.mark.django_db

URIS = ("turn:turn.test.local:3478?transport=udp", "turns:turn.test.local:5349?transport=tcp")


@pytest.fixture
def turn(settings: Any) -> Iterator[Any]:
    """Sets settings.MATRIX["TURN"] for one test."""

    def configure(value: TurnConfig | None) -> None:
        settings.MATRIX = {**settings.MATRIX, "TURN": value}

    yield configure


def test_without_a_turn_server_the_answer_is_empty(
    any_prefix_client: MatrixClient, alice: TestUser, turn: Any
) -> None:
    turn(None)
    assert any_prefix_client.get("voip/turnServer", token=alice).json() == {}


def test_shared_secret_gives_time_limited_credentials_coturn_accepts(
    any_prefix_client: MatrixClient, alice: TestUser, turn: Any
) -> None:
    turn(TurnConfig(uris=URIS, shared_secret="s3cret", username="", password="", lifetime_s=3600))
    before = int(time.time())
    body = any_prefix_client.get("voip/turnServer", token=alice).json()
    after = int(time.time())
    assert set(body) == {"username", "password", "uris", "ttl"}
    assert body["uris"] == list(URIS)
    assert body["ttl"] == 3600
    expiry, user_id = body["username"].split(":", 1)
    assert user_id == alice.user_id
    assert before + 3600 <= int(expiry) <= after + 3600
    # What coturn computes for use-auth-secret: base64(HMAC-SHA1(secret, username)), padded.
    mac = hmac.new(b"s3cret", body["username"].encode(), hashlib.sha1)
    expected = base64.b64encode(mac.digest()).decode()
    assert body["password"] == expected


def test_credentials_are_per_user(alice: TestUser, bob: TestUser, matrix: MatrixClient, turn: Any) -> None:
    turn(TurnConfig(uris=URIS, shared_secret="s3cret", username="", password="", lifetime_s=60))
    a = matrix.get("voip/turnServer", token=alice).json()
    b = matrix.get("voip/turnServer", token=bob).json()
    assert a["username"].endswith(":" + alice.user_id) and b["username"].endswith(":" + bob.user_id)
    assert a["password"] != b["password"]


def test_static_credentials(matrix: MatrixClient, alice: TestUser, turn: Any) -> None:
    turn(TurnConfig(uris=URIS[:1], shared_secret="", username="turn", password="pw", lifetime_s=86400))
    assert matrix.get("voip/turnServer", token=alice).json() == {
        "username": "turn",
        "password": "pw",
        "uris": [URIS[0]],
        "ttl": 86400,
    }


def test_turn_server_needs_a_token(matrix: MatrixClient, turn: Any) -> None:
    turn(TurnConfig(uris=URIS, shared_secret="s3cret", username="", password="", lifetime_s=60))
    assert_matrix_error(matrix.get("voip/turnServer", expect=None), 401, "M_MISSING_TOKEN")
    resp = matrix.post("voip/turnServer", {}, expect=None)
    assert_matrix_error(resp, 405, "M_UNRECOGNIZED")


# -- the configuration (matrixsrv/config.py) -------------------------------------------------------------


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name in ("URIS", "SHARED_SECRET", "USERNAME", "PASSWORD", "USER_LIFETIME_S"):
        monkeypatch.delenv(f"MATRIX_TURN_{name}", raising=False)
    for name, value in values.items():
        monkeypatch.setenv(f"MATRIX_TURN_{name.upper()}", value)


def test_config_no_uris_means_no_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, shared_secret="x")
    assert config.turn() is None
    _env(monkeypatch, uris=" , ")
    assert config.turn() is None


def test_config_reads_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, uris=f" {URIS[0]} ,{URIS[1]}", shared_secret="k")
    expected = TurnConfig(uris=URIS, shared_secret="k", username="", password="", lifetime_s=86400)
    assert config.turn() == expected
    _env(monkeypatch, uris=URIS[0], username="u", password="p", user_lifetime_s="120")
    assert config.turn() == TurnConfig(
        uris=URIS[:1], shared_secret="", username="u", password="p", lifetime_s=120
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"uris": "stun:stun.test.local", "shared_secret": "k"}, "turn: or turns:"),
        ({"uris": URIS[0]}, "MATRIX_TURN_SHARED_SECRET"),
        ({"uris": URIS[0], "username": "u"}, "MATRIX_TURN_SHARED_SECRET"),
        ({"uris": URIS[0], "shared_secret": "k", "user_lifetime_s": "0"}, "positive"),
        ({"uris": URIS[0], "shared_secret": "k", "user_lifetime_s": "a day"}, "whole number"),
    ],
)
def test_config_rejects_a_half_done_turn_setup(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], message: str
) -> None:
    _env(monkeypatch, **values)
    with pytest.raises(ValueError, match=message):
        config.turn()


def test_the_settings_are_documented() -> None:
    for name in ("URIS", "SHARED_SECRET", "USERNAME", "PASSWORD", "USER_LIFETIME_S"):
        assert config.SETTINGS[f"MATRIX_TURN_{name}"].help
    assert config.SETTINGS["MATRIX_TURN_USER_LIFETIME_S"].default == "86400"
