"""Room versions (events/room_versions.py), and the rule that layer-0 modules stay pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from events.room_versions import (
    DEFAULT_ROOM_VERSION,
    REDACTION_RULES_V9,
    REDACTION_RULES_V11,
    ROOM_VERSIONS,
    RoomVersion,
    get_room_version,
)
from matrixsrv.errors import UnsupportedRoomVersion


@pytest.mark.parametrize(
    ("identifier", "flags"),
    [
        pytest.param(
            "10",
            {
                "implicit_room_creator": False,
                "redacts_in_content": False,
                "redaction_rules": REDACTION_RULES_V9,
                "room_id_is_create_event_hash": False,
                "creators_have_infinite_power": False,
                "additional_creators": False,
                "create_event_in_auth_events": True,
            },
            id="v10",
        ),
        pytest.param(
            "11",
            {
                "implicit_room_creator": True,
                "redacts_in_content": True,
                "redaction_rules": REDACTION_RULES_V11,
                "room_id_is_create_event_hash": False,
                "creators_have_infinite_power": False,
                "additional_creators": False,
                "create_event_in_auth_events": True,
            },
            id="v11",
        ),
        pytest.param(
            "12",
            {
                "implicit_room_creator": True,
                "redacts_in_content": True,
                "redaction_rules": REDACTION_RULES_V11,
                "room_id_is_create_event_hash": True,
                "creators_have_infinite_power": True,
                "additional_creators": True,
                "create_event_in_auth_events": False,
            },
            id="v12",
        ),
    ],
)
def test_room_version_flags(identifier: str, flags: dict[str, object]) -> None:
    version = get_room_version(identifier)
    assert version.identifier == identifier
    for name, value in flags.items():
        assert getattr(version, name) == value, name
    # Shared by all three: knocking (v7), restricted joins (v8), knock_restricted + integer levels (v10).
    assert version.knock_join_rule and version.restricted_join_rule and version.knock_restricted_join_rule
    assert version.strict_integer_power_levels


def test_default_room_version_is_12() -> None:
    # The spec: "Servers SHOULD use room version 12 as the default room version".
    assert DEFAULT_ROOM_VERSION == "12"
    assert DEFAULT_ROOM_VERSION in ROOM_VERSIONS
    assert set(ROOM_VERSIONS) == {"10", "11", "12"}


@pytest.mark.parametrize("identifier", ["1", "9", "13", "", "org.example.v1", ["12"], None])
def test_unknown_room_version(identifier: object) -> None:
    with pytest.raises(UnsupportedRoomVersion) as excinfo:
        get_room_version(identifier)  # type: ignore[arg-type]
    assert excinfo.value.errcode == "M_UNSUPPORTED_ROOM_VERSION"
    assert excinfo.value.status == 400


def test_room_versions_are_frozen() -> None:
    version = get_room_version("12")
    with pytest.raises(AttributeError):
        version.identifier = "13"  # type: ignore[misc]
    assert isinstance(version, RoomVersion)


PURE_MODULES = ["room_versions", "pdu", "power_levels", "auth_rules", "redaction", "hashing", "visibility"]
ALLOWED_IMPORTS = {"__future__", "canonicaljson", "unpaddedbase64", "matrixsrv.errors", "matrixsrv.identifiers"}


@pytest.mark.parametrize("module", PURE_MODULES)
def test_room_rule_modules_are_pure(module: str) -> None:
    """Layer 0 (DESIGN.md 4.2): stdlib, canonicaljson, unpaddedbase64, matrixsrv.errors and each other."""
    import sys

    path = Path(__file__).resolve().parents[2] / "events" / f"{module}.py"
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            ok = (
                name in ALLOWED_IMPORTS
                or top in sys.stdlib_module_names
                or (top == "events" and name.split(".")[1] in PURE_MODULES)
            )
            assert ok, f"events/{module}.py imports {name}"
