"""Running a matrix-nio scenario against the live server (tests/e2e/test_nio_*.py).

nio does not fail on a response that breaks its schemas: it logs "Error validating ..." and goes
on. ``run_nio_scenario`` therefore captures nio's warnings, fails on any such complaint, and puts
them and the server's log tail into the failure message of a scenario that fails or times out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

import pytest

from tests.live import LiveServer

SERVER_LOG_TAIL = 8000


def nio_validation_problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("nio") and "Error validating" in r.getMessage()
    ]


def run_nio_scenario(
    scenario: Coroutine[Any, Any, None],
    *,
    server: LiveServer,
    caplog: pytest.LogCaptureFixture,
    timeout_s: float = 90,
    tolerated: Iterable[str] = (),
) -> None:
    """Run ``scenario`` (bounded by ``timeout_s``); then no nio schema complaint may remain but those
    containing one of ``tolerated``. Call ``caplog.set_level`` for nio before creating the scenario's
    clients (this does it too, for scenarios created afterwards)."""
    caplog.set_level(logging.WARNING, logger="nio")  # nio.responses and nio.events.misc
    try:
        asyncio.run(asyncio.wait_for(scenario, timeout=timeout_s))
    except (AssertionError, TimeoutError) as exc:
        problems = nio_validation_problems(caplog)
        details = "\nnio schema validation failed:\n" + "\n".join(problems) if problems else ""
        raise AssertionError(
            f"{exc!r}{details}\n--- server log (tail) ---\n{server.logs()[-SERVER_LOG_TAIL:]}"
        ) from exc
    problems = [p for p in nio_validation_problems(caplog) if not any(t in p for t in tolerated)]
    assert not problems, "nio schema validation failed:\n" + "\n".join(problems)
