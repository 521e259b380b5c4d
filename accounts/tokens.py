"""Access tokens: opaque, 256 bits of randomness, stored only as their SHA-256. Pure."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "mxs_"


def new_access_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_device_id() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(10))


def new_session_id() -> str:
    return secrets.token_urlsafe(18)
