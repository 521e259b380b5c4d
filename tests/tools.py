"""External programs some tests need (nginx, Debian's chromium, npm): skip without them, except where
the environment says they must be there. ``.ci/run`` installs them and sets ``MATRIX_TESTS_REQUIRE``
(e.g. ``"nginx chromium npm"``), so in CI the deployment, browser and js-sdk tests fail instead of
skipping if a tool is missing: they have to pass there, not vanish."""

from __future__ import annotations

import os

import pytest


def required_tools() -> set[str]:
    return set(os.environ.get("MATRIX_TESTS_REQUIRE", "").split())


def skip_without(tool: str, reason: str) -> None:
    """Skip the running test (or fixture) for want of ``tool``, or fail when it is required."""
    if tool in required_tools():
        pytest.fail(f"{reason}; MATRIX_TESTS_REQUIRE says {tool} must be here", pytrace=False)
    pytest.skip(reason)
