"""Dot-separated property paths (spec appendices, "Dot-separated property paths"). Pure.

Used by push-rule conditions (``content.body``) and by filters' ``event_fields``.
"""

from __future__ import annotations


def split_dotted_path(path: str) -> tuple[str, ...]:
    r"""The property names of ``path``: ``\.`` is a literal dot, ``\\`` a literal backslash, and any
    other ``\x`` stays a backslash followed by ``x``."""
    names: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(path):
        char = path[i]
        if char == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
            current.append(path[i + 1])
            i += 2
            continue
        if char == ".":
            names.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    names.append("".join(current))
    return tuple(names)
