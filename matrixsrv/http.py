"""Small helpers for views: read a JSON body's fields with Matrix errors on bad input."""

from __future__ import annotations

from typing import Any

from matrixsrv.errors import BadJson, InvalidParam, MissingParam

_MISSING = object()


def json_object(data: Any) -> dict[str, Any]:
    """The request body as a dict, or 400 M_BAD_JSON (e.g. a JSON list or string)."""
    if not isinstance(data, dict):
        raise BadJson("Request body must be a JSON object")
    return data


def opt_str(body: dict[str, Any], key: str, *, max_length: int = 65536) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadJson(f"'{key}' must be a string")
    if len(value) > max_length:
        raise InvalidParam(f"'{key}' is too long")
    return value


def req_str(body: dict[str, Any], key: str, *, max_length: int = 65536) -> str:
    value = opt_str(body, key, max_length=max_length)
    if value is None:
        raise MissingParam(f"Missing '{key}'")
    return value


def opt_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise BadJson(f"'{key}' must be a boolean")
    return value


def opt_dict(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadJson(f"'{key}' must be an object")
    return value


def opt_str_list(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadJson(f"'{key}' must be a list of strings")
    return value


def query_int(params: Any, key: str, default: int | None = None, *, minimum: int = 0) -> int | None:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParam(f"'{key}' must be an integer") from None
    if value < minimum:
        raise InvalidParam(f"'{key}' must be at least {minimum}")
    return value


def client_ip(request: Any) -> str | None:
    """The client's address: the peer, or, behind N trusted proxies, X-Forwarded-For's Nth from the right.

    Only the entries the trusted proxies appended are believed; anything further left was supplied
    by the client and could be forged (MATRIX_TRUSTED_PROXY_COUNT).
    """
    from django.conf import settings

    meta = getattr(request, "META", {})
    trusted = settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if trusted and forwarded:
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-min(trusted, len(hops))]
    return meta.get("REMOTE_ADDR")
