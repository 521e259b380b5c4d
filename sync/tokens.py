"""Stream tokens: ``s<pos>``, used by /sync (``next_batch``, ``since``) and by /messages (``from``,
``to``, ``start``, ``end``, ``prev_batch``), so a sync's prev_batch pages back through /messages. Pure.

The letter prefix leaves room for a second component later without breaking old clients.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from matrixsrv.errors import InvalidParam

_TOKEN = re.compile(r"s[0-9]{1,19}")  # a BIGINT has at most 19 digits


@dataclass(frozen=True, order=True)
class StreamToken:
    pos: int

    @classmethod
    def parse(cls, raw: str) -> StreamToken:
        # ASCII digits only: str.isdigit() also accepts "²" (which int() rejects) and "١٢" (which it reads).
        if not isinstance(raw, str) or _TOKEN.fullmatch(raw) is None:
            shown = repr(raw[:40]) if isinstance(raw, str) else type(raw).__name__
            raise InvalidParam(f"Invalid stream token {shown}")
        return cls(int(raw[1:]))

    def __str__(self) -> str:
        return f"s{self.pos}"

    def clamp(self, head: int) -> StreamToken:
        """A position from the future (e.g. another server's token, a restored database) becomes head."""
        return self if self.pos <= head else StreamToken(head)
