"""matrix-js-sdk with its Rust crypto (matrix-sdk-crypto-wasm) against the live homeserver: an end-to-end
encrypted conversation.

The client side is ``tests/e2e/js/e2ee.mjs`` (see its header): two users start the Rust crypto
(in-memory store), exchange megolm-encrypted messages in a room with ``m.room.encryption`` that the
other side decrypts, bootstrap cross-signing (each sees the other's device signed by its owner), back
up room keys to the server; then B's second device logs in, A's client learns of it through
``device_lists.changed`` and /keys/query and A's next message is decrypted by it; B deletes that
device and A's client learns it is gone. The Node project is installed and run as for the
conversation test (``run_js_script``).
"""

from __future__ import annotations

import pytest

from tests.e2e.test_js_sdk_conversation import NPM_CI_TIMEOUT_S, run_js_script
from tests.live import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCRIPT_TIMEOUT_S = 120  # the script's own global timeout is 100 s; it takes a few seconds


@pytest.mark.timeout(NPM_CI_TIMEOUT_S + SCRIPT_TIMEOUT_S + 60)
def test_js_sdk_rust_crypto_encrypted_conversation_and_a_new_device(live_matrix_server: LiveServer) -> None:
    out = run_js_script("e2ee.mjs", live_matrix_server, timeout_s=SCRIPT_TIMEOUT_S)
    # The script fails on any step it cannot complete; these lines say each part ran.
    for done in (
        'B decrypted "Hello B, this is A, encrypted."',
        'A decrypted "Hi A! B here, also encrypted."',
        "B's crypto knows A's cross-signing identity",
        "A's crypto knows B's cross-signing identity",
        "A's backup holds",
        "A's crypto now lists B's devices",
        "B2 decrypted \"Welcome, B's second device.\"",
        'A decrypted "B2 writes back, encrypted."',
        'B decrypted "Just the two of us again."',
    ):
        assert done in out, f"e2ee.mjs printed no {done!r}"
