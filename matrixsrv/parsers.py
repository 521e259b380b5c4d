"""Request bodies under /_matrix are JSON, whatever Content-Type the client claims.

curl's ``-d`` (the seed's walk-through) sends ``application/x-www-form-urlencoded``; matrix-nio and
matrix-js-sdk send ``application/json`` with an empty body for /join, /leave and /logout. So this
parser accepts every media type, reads an empty body as ``{}`` and rejects anything that is not JSON.
"""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework.parsers import BaseParser

from matrixsrv.errors import NotJson, TooLarge


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def loads_json(raw: bytes) -> object:
    """Decode a JSON request body (strict: no NaN/Infinity, UTF-8 only). Empty → {}."""
    if len(raw) > settings.MATRIX_MAX_BODY_BYTES:
        raise TooLarge("Request body too large")
    if not raw.strip():
        return {}
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise NotJson(f"Content not JSON: {exc}") from None


class MatrixJSONParser(BaseParser):
    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[override]
        return loads_json(stream.read(settings.MATRIX_MAX_BODY_BYTES + 1) if stream is not None else b"")
