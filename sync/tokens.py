"""Stream tokens: ``s<pos>``, used by /sync (``next_batch``, ``since``) and by /messages (``from``,
``to``, ``start``, ``end``, ``prev_batch``), so a sync's prev_batch pages back through /messages. Pure.

The letter prefix leaves room for a second component later without breaking old clients.
"""

from __future__ import annotations

from dataclasses import dataclass

from matrixsrv.errors import InvalidParam


@dataclass(frozen=True, order=True)
class StreamToken:
    pos: int

    @classmethod
    def parse(cls, raw: str) -> "StreamToken":
        if not isinstance(raw, str) or len(raw) < 2 or raw[0] != "s" or not raw[1:].isdigit() or len(raw) > 20:
            raise InvalidParam(f"Invalid stream token {raw!r}")
        return cls(int(raw[1:]))

    def __str__(self) -> str:
        return f"s{self.pos}"

    def clamp(self, head: int) -> "StreamToken":
        """A position from the future (e.g. another server's token, a restored database) becomes head."""
        return self if self.pos <= head else StreamToken(head)
