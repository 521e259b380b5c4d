"""Event filters (client-server spec "Filtering"): Filter, RoomFilter, RoomEventFilter, EventFilter.

Pure: stdlib only. ``parse_*`` turns the spec's JSON into frozen dataclasses, and the dataclasses
answer "does this event pass?". The SQL side (events.timeline) turns the same dataclasses into
``WHERE`` clauses with ``glob_to_regex`` / ``split_type_patterns`` and re-checks rows in Python, so the
two can never disagree about which events a filter lets through.

Parsing rules:

* Unknown keys are ignored (the spec is open-ended and clients send extras). ``null`` counts as absent.
* A value of the wrong JSON type is 400 ``M_BAD_JSON``; a value of the right type that the spec
  forbids (a negative ``limit``, an ``event_format`` other than client/federation, a room ID without
  ``!``, a sender without ``@``) is 400 ``M_INVALID_PARAM``. Error messages name the path, e.g.
  ``room.timeline.limit``.
* ``limit: 0`` is accepted although the spec says "greater than 0": Synapse accepts it and clients
  (bots asking /sync for no timeline) send it. Each endpoint picks its own default and cap.
* ``event_fields: []`` means "all fields" (Synapse's reading: an empty list is as good as absent;
  returning empty objects helps nobody).

Matching rules (the spec's, and Synapse's where the spec is silent):

* ``types`` / ``not_types``: ``*`` matches any sequence of characters, anywhere in the pattern; the
  rest is literal and case-sensitive. ``not_*`` wins over the inclusion list. An absent inclusion
  list allows everything; an empty one allows nothing.
* ``senders`` / ``not_senders``, ``rooms`` / ``not_rooms``: exact IDs. An event without a sender
  (account data) passes unless a ``senders`` list is given.
* ``contains_url``: ``true`` keeps only events whose ``content.url`` is a string, ``false`` drops them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from matrixsrv.dotted_paths import split_dotted_path
from matrixsrv.errors import BadJson, InvalidParam, NotJson

EVENT_FORMATS = ("client", "federation")


# -- type patterns (shared by the Python matcher and the SQL builder) ------------------------------


def glob_to_regex(pattern: str) -> str:
    r"""A type pattern as an anchored regular expression that Python's ``re``, SQLite's REGEXP (which
    is Python's ``re``) and PostgreSQL's ``~`` all read the same way: ``*`` becomes ``.*``, every other
    non-alphanumeric character is backslash-escaped (a literal in all three dialects), and ``\A``/``\Z``
    anchor the whole string (``$`` would also match before a trailing newline in Python)."""
    parts: list[str] = []
    for char in pattern:
        if char == "*":
            if not parts or parts[-1] != ".*":
                parts.append(".*")
        elif char.isalnum():
            parts.append(char)
        else:
            parts.append("\\" + char)
    return r"\A" + "".join(parts) + r"\Z"


@dataclass(frozen=True)
class TypePatterns:
    """A ``types``/``not_types`` list split for SQL: exact names (``IN``) and wildcard regexes."""

    exact: frozenset[str]
    regexes: tuple[str, ...]
    matches_all: bool  # the list contains a bare ``*``


def split_type_patterns(patterns: Iterable[str]) -> TypePatterns:
    exact: set[str] = set()
    regexes: list[str] = []
    matches_all = False
    for pattern in patterns:
        if "*" not in pattern:
            exact.add(pattern)
        elif pattern.strip("*") == "":
            matches_all = True
        else:
            regexes.append(glob_to_regex(pattern))
    return TypePatterns(frozenset(exact), tuple(dict.fromkeys(regexes)), matches_all)


class _TypeMatcher:
    """Matches event types against a list of patterns: a set lookup, then one compiled regex."""

    __slots__ = ("_all", "_exact", "_regex")

    def __init__(self, patterns: Iterable[str]) -> None:
        split = split_type_patterns(patterns)
        self._exact = split.exact
        self._all = split.matches_all
        self._regex = re.compile("|".join(split.regexes), re.DOTALL) if split.regexes else None

    def __call__(self, event_type: str) -> bool:
        if self._all or event_type in self._exact:
            return True
        return self._regex is not None and self._regex.match(event_type) is not None


# -- the filter model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    """The spec's EventFilter (presence, global account data) and the base of RoomEventFilter.

    ``None`` for an inclusion list means "absent": everything is included.
    """

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    _types: _TypeMatcher | None = field(init=False, repr=False, compare=False, default=None)
    _not_types: _TypeMatcher | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_types", _TypeMatcher(self.types) if self.types is not None else None)
        object.__setattr__(self, "_not_types", _TypeMatcher(self.not_types) if self.not_types else None)

    def matches_type(self, event_type: str) -> bool:
        if self._not_types is not None and self._not_types(event_type):
            return False
        return self._types is None or self._types(event_type)

    def matches_sender(self, sender: str | None) -> bool:
        if sender is not None and sender in self.not_senders:
            return False
        return self.senders is None or sender in self.senders

    def allows(self, *, event_type: str, sender: str | None = None) -> bool:
        return self.matches_type(event_type) and self.matches_sender(sender)

    def matches_event(self, event: Mapping[str, Any]) -> bool:
        """For events as JSON objects (presence, account data): ``type`` and ``sender`` (for presence
        without a top-level sender, ``content.user_id``, as Synapse reads it)."""
        sender = event.get("sender")
        if sender is None and isinstance(event.get("content"), Mapping):
            user_id = event["content"].get("user_id")
            sender = user_id if isinstance(user_id, str) else None
        return self.allows(event_type=str(event.get("type", "")), sender=sender)

    def limit_or(self, default: int, *, cap: int) -> int:
        """The filter's ``limit`` (or ``default``), at most ``cap``."""
        return min(self.limit if self.limit is not None else default, cap)

    @property
    def is_unrestricted(self) -> bool:
        """Whether this filter lets every event through (its ``limit`` aside)."""
        return (
            (self.types is None or "*" in self.types)
            and not self.not_types
            and self.senders is None
            and not self.not_senders
        )


@dataclass(frozen=True)
class RoomEventFilter(EventFilter):
    """The spec's RoomEventFilter: /messages, /context, and each part of a sync's ``room`` filter."""

    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    def matches_room(self, room_id: str | None) -> bool:
        if room_id is not None and room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def matches_url(self, content: Mapping[str, Any] | None) -> bool:
        if self.contains_url is None:
            return True
        has_url = isinstance(content, Mapping) and isinstance(content.get("url"), str)
        return has_url == self.contains_url

    def allows(
        self,
        *,
        event_type: str,
        sender: str | None = None,
        room_id: str | None = None,
        content: Mapping[str, Any] | None = None,
    ) -> bool:
        return (
            self.matches_type(event_type)
            and self.matches_sender(sender)
            and self.matches_room(room_id)
            and self.matches_url(content)
        )

    def matches_event(self, event: Mapping[str, Any]) -> bool:
        content = event.get("content")
        return self.allows(
            event_type=str(event.get("type", "")),
            sender=event.get("sender"),
            room_id=event.get("room_id"),
            content=content if isinstance(content, Mapping) else None,
        )

    @property
    def is_unrestricted(self) -> bool:
        return (
            super().is_unrestricted
            and self.rooms is None
            and not self.not_rooms
            and self.contains_url is None
        )


@dataclass(frozen=True)
class RoomFilter:
    """The spec's RoomFilter: which rooms a sync covers, and a RoomEventFilter for each section."""

    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    timeline: RoomEventFilter = RoomEventFilter()
    state: RoomEventFilter = RoomEventFilter()
    ephemeral: RoomEventFilter = RoomEventFilter()
    account_data: RoomEventFilter = RoomEventFilter()

    def matches_room(self, room_id: str) -> bool:
        """Applied before the section filters (which have their own rooms/not_rooms too)."""
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


@dataclass(frozen=True)
class Filter:
    """The spec's Filter (POST /user/{userId}/filter, /sync's ``filter``)."""

    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"
    presence: EventFilter = EventFilter()
    account_data: EventFilter = EventFilter()
    room: RoomFilter = RoomFilter()


DEFAULT_FILTER = Filter()
DEFAULT_ROOM_EVENT_FILTER = RoomEventFilter()


# -- parsing ----------------------------------------------------------------------------------------


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _object(raw: object, path: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise BadJson(f"'{path or 'filter'}' must be a JSON object")
    return raw


def _opt_bool(obj: Mapping[str, Any], key: str, path: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise BadJson(f"'{_where(path, key)}' must be a boolean")
    return value


def _opt_str_list(
    obj: Mapping[str, Any], key: str, path: str, *, prefix: str | None = None
) -> tuple[str, ...] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadJson(f"'{_where(path, key)}' must be a list of strings")
    if prefix is not None:
        for item in value:
            if not item.startswith(prefix):
                raise InvalidParam(f"'{_where(path, key)}' entries must start with '{prefix}': {item!r}")
    return tuple(dict.fromkeys(value))


def _opt_limit(obj: Mapping[str, Any], path: str) -> int | None:
    value = obj.get("limit")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadJson(f"'{_where(path, 'limit')}' must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise BadJson(f"'{_where(path, 'limit')}' must be an integer")
        value = int(value)
    if value < 0:
        raise InvalidParam(f"'{_where(path, 'limit')}' must not be negative")
    return value


def _event_filter_fields(obj: Mapping[str, Any], path: str) -> dict[str, Any]:
    return {
        "limit": _opt_limit(obj, path),
        "types": _opt_str_list(obj, "types", path),
        "not_types": _opt_str_list(obj, "not_types", path) or (),
        "senders": _opt_str_list(obj, "senders", path, prefix="@"),
        "not_senders": _opt_str_list(obj, "not_senders", path, prefix="@") or (),
    }


def parse_event_filter(raw: object, *, path: str = "") -> EventFilter:
    """An EventFilter from its JSON (absent/``null``: the unrestricted filter)."""
    if raw is None:
        return EventFilter()
    return EventFilter(**_event_filter_fields(_object(raw, path), path))


def parse_room_event_filter(raw: object, *, path: str = "") -> RoomEventFilter:
    """A RoomEventFilter from its JSON (absent/``null``: the unrestricted filter)."""
    if raw is None:
        return RoomEventFilter()
    obj = _object(raw, path)
    return RoomEventFilter(
        **_event_filter_fields(obj, path),
        rooms=_opt_str_list(obj, "rooms", path, prefix="!"),
        not_rooms=_opt_str_list(obj, "not_rooms", path, prefix="!") or (),
        contains_url=_opt_bool(obj, "contains_url", path),
        lazy_load_members=bool(_opt_bool(obj, "lazy_load_members", path)),
        include_redundant_members=bool(_opt_bool(obj, "include_redundant_members", path)),
        unread_thread_notifications=bool(_opt_bool(obj, "unread_thread_notifications", path)),
    )


def parse_room_filter(raw: object, *, path: str = "room") -> RoomFilter:
    if raw is None:
        return RoomFilter()
    obj = _object(raw, path)
    return RoomFilter(
        rooms=_opt_str_list(obj, "rooms", path, prefix="!"),
        not_rooms=_opt_str_list(obj, "not_rooms", path, prefix="!") or (),
        include_leave=bool(_opt_bool(obj, "include_leave", path)),
        timeline=parse_room_event_filter(obj.get("timeline"), path=_where(path, "timeline")),
        state=parse_room_event_filter(obj.get("state"), path=_where(path, "state")),
        ephemeral=parse_room_event_filter(obj.get("ephemeral"), path=_where(path, "ephemeral")),
        account_data=parse_room_event_filter(obj.get("account_data"), path=_where(path, "account_data")),
    )


def parse_filter(raw: object) -> Filter:
    """A Filter from its JSON (absent/``null``: the default filter)."""
    if raw is None:
        return DEFAULT_FILTER
    obj = _object(raw, "")
    event_format = obj.get("event_format")
    if event_format is None:
        event_format = "client"
    elif not isinstance(event_format, str):
        raise BadJson("'event_format' must be a string")
    elif event_format not in EVENT_FORMATS:
        raise InvalidParam("'event_format' must be 'client' or 'federation'")
    fields = _opt_str_list(obj, "event_fields", "")
    return Filter(
        event_fields=fields or None,
        event_format=event_format,
        presence=parse_event_filter(obj.get("presence"), path="presence"),
        account_data=parse_event_filter(obj.get("account_data"), path="account_data"),
        room=parse_room_filter(obj.get("room")),
    )


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def decode_json(text: str) -> object:
    """Strict JSON (no NaN/Infinity); 400 ``M_NOT_JSON`` if it isn't JSON at all."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise NotJson("The filter is not valid JSON") from None


def parse_filter_json(text: str) -> Filter:
    """A Filter from a query parameter (``/sync?filter={...}``)."""
    return parse_filter(_object(decode_json(text), ""))


def parse_room_event_filter_json(text: str) -> RoomEventFilter:
    """A RoomEventFilter from a query parameter (``/messages?filter=...``, ``/context?filter=...``)."""
    return parse_room_event_filter(_object(decode_json(text), ""))


# -- event_fields -----------------------------------------------------------------------------------


def split_field_path(path: str) -> tuple[str, ...]:
    """A dot-separated property path (spec appendix) as its property names."""
    return split_dotted_path(path)


def apply_event_fields(event: Mapping[str, Any], fields: Iterable[str] | None) -> dict[str, Any]:
    """Only the listed dot-separated paths of ``event`` (a client-format event). ``None`` or an empty
    list: the whole event. A path through a non-object, or to a missing property, is skipped. The
    input is not modified; objects on the way to a listed path are new, listed values are shared."""
    fields = list(fields or ())
    if not fields:
        return dict(event)
    tree: dict[str, Any] = {}
    WHOLE: dict[str, Any] = {}  # marker: the path ends here, take the whole value
    for raw in fields:
        node = tree
        names = split_field_path(raw)
        for depth, name in enumerate(names):
            if node.get(name) is WHOLE:
                break  # a shorter path already takes the whole value
            if depth == len(names) - 1:
                node[name] = WHOLE
            else:
                node = node.setdefault(name, {})
    return _pick(event, tree, WHOLE)


def _pick(source: Mapping[str, Any], tree: Mapping[str, Any], whole: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, sub in tree.items():
        if name not in source:
            continue
        value = source[name]
        if sub is whole:
            out[name] = value
        elif isinstance(value, Mapping):
            picked = _pick(value, sub, whole)
            if picked:
                out[name] = picked
    return out
