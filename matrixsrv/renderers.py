"""Compact JSON responses (DRF's default renderer indents for browsers; clients don't need it)."""

from __future__ import annotations

import json

from rest_framework.renderers import BaseRenderer


class MatrixJSONRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):  # type: ignore[override]
        if data is None:
            return b""
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
