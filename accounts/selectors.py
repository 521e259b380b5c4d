"""Reads for accounts."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from accounts.models import AccessToken, Device, User
from accounts.tokens import hash_token
from matrixsrv.errors import NotFound
from matrixsrv.identifiers import UserID
from matrixsrv.rawsql import columns, fetch_one, instance


@cache
def _token_sql() -> str:
    _, token_cols = columns(AccessToken)
    _, user_cols = columns(User)
    _, device_cols = columns(Device)
    t, u, d = AccessToken._meta.db_table, User._meta.db_table, Device._meta.db_table
    return (
        f"SELECT {token_cols}, {user_cols}, {device_cols} FROM {t} "
        f"JOIN {u} ON {u}.id = {t}.user_id JOIN {d} ON {d}.id = {t}.device_id "
        f"WHERE {t}.token_hash = %s AND {u}.is_active"
    )


def find_access_token(token: str) -> AccessToken | None:
    """The live token row with its user and device, in one query; None if unknown or revoked.
    (Hand-written SQL: this runs on every authenticated request; see matrixsrv/rawsql.py.)"""
    row = fetch_one(_token_sql(), [hash_token(token)])
    if row is None:
        return None
    access_token, i = instance(AccessToken, row)
    user, i = instance(User, row, i)
    device, _ = instance(Device, row, i)
    access_token.user, access_token.device = user, device
    return access_token


def find_local_user(identifier: str) -> User | None:
    """A local user by localpart or full user ID (case-insensitive, as clients type them)."""
    identifier = identifier.strip()
    if identifier.startswith("@"):
        try:
            parsed = UserID.parse(identifier)
        except Exception:
            return None
        if parsed.server_name != settings.MATRIX["SERVER_NAME"]:
            return None
        identifier = parsed.localpart
    return User.objects.filter(localpart=identifier.lower()).first()


def list_devices(user: User) -> list[Device]:
    return list(Device.objects.filter(user=user).order_by("device_id"))


def get_device(user: User, device_id: str) -> Device:
    device = Device.objects.filter(user=user, device_id=device_id).first()
    if device is None:
        raise NotFound("Unknown device")
    return device


def is_localpart_taken(localpart: str) -> bool:
    return User.objects.filter(localpart=localpart).exists()
