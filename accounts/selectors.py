"""Reads for accounts."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.db.models import Model

from accounts.models import AccessToken, Device, User
from accounts.tokens import hash_token
from matrixsrv.errors import NotFound
from matrixsrv.identifiers import UserID
from matrixsrv.rawsql import Read, columns, instance, run_read


# Per-user rows of higher layers that every authenticated request loads with its token (one LEFT
# JOIN each, no round trip): (model keyed by a one-to-one ``user`` primary key, User attribute).
_TOKEN_JOINS: list[tuple[type[Model], str]] = []


def load_with_token(model: type[Model], attr: str) -> None:
    """Have ``find_access_token`` set ``user.<attr>`` to the user's ``model`` row (None without one).
    Called from an app's ``ready()``; e.g. presence, whose row every send reads."""
    _TOKEN_JOINS.append((model, attr))
    _token_sql.cache_clear()


@cache
def _token_sql() -> str:
    _, token_cols = columns(AccessToken)
    _, user_cols = columns(User)
    _, device_cols = columns(Device)
    t, u, d = AccessToken._meta.db_table, User._meta.db_table, Device._meta.db_table
    selected, joins = [token_cols, user_cols, device_cols], []
    for model, _ in _TOKEN_JOINS:
        table = model._meta.db_table
        selected.append(columns(model)[1])
        joins.append(f" LEFT JOIN {table} ON {table}.{model._meta.pk.column} = {t}.user_id")
    return (
        f"SELECT {', '.join(selected)} FROM {t} "
        f"JOIN {u} ON {u}.id = {t}.user_id JOIN {d} ON {d}.id = {t}.device_id{''.join(joins)} "
        f"WHERE {t}.token_hash = %s AND {u}.is_active"
    )


def find_access_token(token: str) -> AccessToken | None:
    """The live token row with its user and device, in one query; None if unknown or revoked.
    (Hand-written SQL: this runs on every authenticated request; see matrixsrv/rawsql.py.)"""
    return run_read(access_token_read(token))


def access_token_read(token: str) -> Read[AccessToken | None]:
    """``find_access_token`` as a read, to go with others in one round trip (``rawsql.run_reads``)."""
    return Read(_token_sql(), [hash_token(token)], _parse_access_token)


def _parse_access_token(rows: list[tuple[Any, ...]]) -> AccessToken | None:
    if not rows:
        return None
    row = rows[0]
    access_token, i = instance(AccessToken, row)
    user, i = instance(User, row, i)
    device, i = instance(Device, row, i)
    for model, attr in _TOKEN_JOINS:
        names = columns(model)[0]
        start, i = i, i + len(names)
        present = row[start + names.index(model._meta.pk.attname)] is not None
        setattr(user, attr, instance(model, row, start)[0] if present else None)
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
