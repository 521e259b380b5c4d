"""Matrix identifiers: parse and validate user IDs, room IDs, aliases and server names. Pure.

Grammar from the spec's appendices ("Identifier Grammar"): user localparts use ``a-z 0-9 . _ = - / +``,
and a whole identifier is at most 255 bytes.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

from matrixsrv.errors import InvalidParam, InvalidUsername

MAX_ID_LENGTH = 255
_LOCALPART_RE = re.compile(r"^[a-z0-9._=\-/+]+$")
# Historical user IDs may use any printable ASCII but ':'; we accept them when parsing others' IDs.
_HISTORICAL_LOCALPART_RE = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")
# server_name = hostname [ ":" port ]; hostname = IPv4 / "[" IPv6 "]" / dns-name
_SERVER_NAME_RE = re.compile(
    r"(?:\[[0-9a-fA-F:.]{2,45}\]|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[A-Za-z0-9\-.]{1,255})(?::[0-9]{1,5})?"
)
_OPAQUE_LOCALPART_RE = re.compile(r"^[^:\x00]+$")


def is_valid_server_name(name: str) -> bool:
    return _SERVER_NAME_RE.fullmatch(name) is not None


def check_localpart(localpart: str, server_name: str) -> None:
    """Raise InvalidUsername unless ``localpart`` may be registered on ``server_name``."""
    if not localpart:
        raise InvalidUsername("User ID cannot be empty")
    if not _LOCALPART_RE.match(localpart):
        raise InvalidUsername("User ID can only contain characters a-z, 0-9, or '=_-./+'")
    if len(f"@{localpart}:{server_name}".encode()) > MAX_ID_LENGTH:
        raise InvalidUsername(f"User ID may not be longer than {MAX_ID_LENGTH} characters")


def random_localpart(length: int = 12) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "u" + "".join(secrets.choice(alphabet) for _ in range(length))


def random_string(length: int) -> str:
    alphabet = string.ascii_letters
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class UserID:
    localpart: str
    server_name: str

    @classmethod
    def parse(cls, raw: str) -> "UserID":
        if not isinstance(raw, str) or not raw.startswith("@") or ":" not in raw:
            raise InvalidParam(f"Invalid user ID: {raw!r}")
        localpart, _, server = raw[1:].partition(":")
        if (
            len(raw.encode()) > MAX_ID_LENGTH
            or not _HISTORICAL_LOCALPART_RE.match(localpart)
            or not is_valid_server_name(server)
        ):
            raise InvalidParam(f"Invalid user ID: {raw!r}")
        return cls(localpart, server)

    def __str__(self) -> str:
        return f"@{self.localpart}:{self.server_name}"


@dataclass(frozen=True)
class RoomAlias:
    localpart: str
    server_name: str

    @classmethod
    def parse(cls, raw: str) -> "RoomAlias":
        if not isinstance(raw, str) or not raw.startswith("#") or ":" not in raw:
            raise InvalidParam(f"Invalid room alias: {raw!r}")
        localpart, _, server = raw[1:].partition(":")
        if not localpart or len(raw.encode()) > MAX_ID_LENGTH or not _OPAQUE_LOCALPART_RE.match(localpart) \
                or not is_valid_server_name(server):
            raise InvalidParam(f"Invalid room alias: {raw!r}")
        return cls(localpart, server)

    def __str__(self) -> str:
        return f"#{self.localpart}:{self.server_name}"


def is_room_id(raw: str) -> bool:
    return isinstance(raw, str) and raw.startswith("!") and len(raw.encode()) <= MAX_ID_LENGTH
