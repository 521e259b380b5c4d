"""Access tokens: opaque, 256 bits of randomness, stored only as their SHA-256. Pure."""

from __future__ import annotations

import hashlib
import re
import secrets
import string

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


REGISTRATION_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")  # spec: m.login.registration_token


def new_registration_token() -> str:
    """16 characters from the spec's token alphabet (Synapse's default length)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(16))
