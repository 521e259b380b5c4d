"""A real browser in the Django admin moderates a room while a matrix-nio client watches /sync.

The homeserver runs as a separate process (tests/live.py) with its own database; a server admin is
made with ``manage.py make_admin`` on that database. alice (the room's creator) and bob talk through
matrix-nio; bob's message is spam. Headless chromium (Debian's, driven by Selenium's chromedriver)
logs into /admin/, finds the room by searching for its name, opens its moderation page, redacts bob's
message and kicks bob, confirming each. Both moderation steps happen while alice's /sync long-poll
is already waiting, and each must wake it: she sees the ``m.room.redaction`` and bob's ``leave`` sent
by the server's moderator account, and bob's own client sees that he left the room.

Every wait is bounded (WebDriverWait, nio timeouts, STEP_DEADLINE_S); the test skips, with the
reason, only when chromium or chromedriver is missing and cannot be installed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.live import REPO, LiveServer, live_server
from tests.tools import skip_without

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SERVER = "localhost"
PASSWORD = "correct horse battery staple"
ADMIN_LOCALPART = "root"
ADMIN_PASSWORD = "admin password for the browser test"
LONG_POLL_MS = 5_000
STEP_DEADLINE_S = 15.0
BROWSER_WAIT_S = 15.0
WHOLE_TEST_BUDGET_S = 60.0


def _browser_available() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


def _try_install_browser() -> str:
    """Install Debian's chromium + chromium-driver when we are root with apt; '' or why not."""
    if _browser_available():
        return ""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "chromium/chromedriver are missing and apt-get cannot run as this user"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"],
    ):
        try:
            subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=600,
                           check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"installing chromium failed: {exc!r}"
        if _browser_available():
            return ""
    return "chromium/chromedriver are missing and `apt-get install chromium chromium-driver` failed"


@pytest.fixture(scope="module")
def chromium() -> Iterator[None]:
    why_not = _try_install_browser()
    if why_not:
        skip_without("chromium", why_not)
    yield


@pytest.fixture
def browser(chromium: None) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(BROWSER_WAIT_S)
    driver.set_script_timeout(BROWSER_WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def make_server_admin(server: LiveServer) -> None:
    """``manage.py make_admin`` on the live server's database (its own environment)."""
    done = subprocess.run(
        [sys.executable, "manage.py", "make_admin", ADMIN_LOCALPART, "--password", ADMIN_PASSWORD],
        cwd=REPO,
        env=server.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- matrix-nio ---------------------------------------------------------------------------------------


def ok(response, expected_type):
    from nio import ErrorResponse

    assert not isinstance(response, ErrorResponse), f"nio error response: {response!r}"
    assert isinstance(response, expected_type), f"expected {expected_type.__name__}, got {response!r}"
    return response


async def sync_until(client, done: Callable[[object], bool], what: str):
    from nio import SyncResponse

    deadline = time.monotonic() + STEP_DEADLINE_S
    while time.monotonic() < deadline:
        response = ok(await client.sync(timeout=LONG_POLL_MS, since=client.next_batch), SyncResponse)
        if done(response):
            return response
    raise AssertionError(f"{client.user_id}: {what} did not arrive through /sync within {STEP_DEADLINE_S}s")


# -- the browser --------------------------------------------------------------------------------------


def admin_login(driver, base_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base_url}/admin/login/?next=/admin/")
    driver.find_element(By.NAME, "username").send_keys(ADMIN_LOCALPART)
    driver.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login-form input[type=submit]").click()
    WebDriverWait(driver, BROWSER_WAIT_S).until(ec.presence_of_element_located((By.ID, "user-tools")))
    assert "Site administration" in driver.page_source


def open_room_by_search(driver, base_url: str, room_name: str, room_id: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base_url}/admin/rooms/room/")
    search = driver.find_element(By.ID, "searchbar")
    search.send_keys(room_name, Keys.ENTER)
    wait = WebDriverWait(driver, BROWSER_WAIT_S)
    link = wait.until(ec.element_to_be_clickable((By.LINK_TEXT, room_name)))
    rows = driver.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1, [r.text for r in rows]
    link.click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f'[data-room-id="{room_id}"]')))


def confirm_and_expect(driver, expected_message: str) -> None:
    """On the confirmation page, press "Yes"; back on the room page, the success message shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, BROWSER_WAIT_S)
    wait.until(ec.element_to_be_clickable((By.ID, "confirm-button"))).click()
    message = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".messagelist li")))
    assert expected_message in message.text, message.text
    assert "success" in (message.get_attribute("class") or ""), message.text


def redact_in_browser(driver, event_id: str) -> None:
    from selenium.webdriver.common.by import By

    row = driver.find_element(By.CSS_SELECTOR, f'tr.event[data-event-id="{event_id}"]')
    row.find_element(By.NAME, "reason").send_keys("spam")
    row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    confirm_and_expect(driver, f"Redacted {event_id}")
    row = driver.find_element(By.CSS_SELECTOR, f'tr.event[data-event-id="{event_id}"]')
    assert "redacted" in row.find_element(By.CSS_SELECTOR, "td.body").text


def kick_in_browser(driver, user_id: str) -> None:
    from selenium.webdriver.common.by import By

    row = driver.find_element(By.CSS_SELECTOR, f'tr.member[data-user="{user_id}"]')
    row.find_element(By.NAME, "reason").send_keys("spamming")
    row.find_element(By.CSS_SELECTOR, 'button[value="kick"]').click()
    confirm_and_expect(driver, f"Kicked {user_id}")
    row = driver.find_element(By.CSS_SELECTOR, f'tr.member[data-user="{user_id}"]')
    assert row.get_attribute("data-membership") == "leave"


# -- the test -----------------------------------------------------------------------------------------


async def _scenario(driver, base_url: str) -> None:
    from nio import (
        AsyncClient,
        JoinResponse,
        RedactionEvent,
        RegisterResponse,
        RoomCreateResponse,
        RoomMemberEvent,
        RoomSendResponse,
        RoomVisibility,
        SyncResponse,
    )

    suffix = secrets.token_hex(3)
    room_name = f"Browser moderation {suffix}"
    alice, bob = AsyncClient(base_url), AsyncClient(base_url)
    try:
        ok(await alice.register(f"alice{suffix}", PASSWORD), RegisterResponse)
        ok(await bob.register(f"bob{suffix}", PASSWORD), RegisterResponse)
        room_id = ok(
            await alice.room_create(visibility=RoomVisibility.public, name=room_name), RoomCreateResponse
        ).room_id
        ok(await bob.join(room_id), JoinResponse)
        spam_id = ok(
            await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": f"spam {suffix}"}),
            RoomSendResponse,
        ).event_id
        for client in (alice, bob):
            ok(await client.sync(timeout=0), SyncResponse)

        assert room_id in alice.rooms and bob.user_id in alice.rooms[room_id].users

        await asyncio.to_thread(admin_login, driver, base_url)
        await asyncio.to_thread(open_room_by_search, driver, base_url, room_name, room_id)

        # The redaction, while alice is long-polling.
        def saw_redaction(response) -> bool:
            room = response.rooms.join.get(room_id)
            return room is not None and any(
                isinstance(e, RedactionEvent) and e.redacts == spam_id for e in room.timeline.events
            )

        waiting = asyncio.create_task(sync_until(alice, saw_redaction, "the redaction"))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(redact_in_browser, driver, spam_id)
        redaction_sync = await waiting
        redaction = next(
            e
            for e in redaction_sync.rooms.join[room_id].timeline.events
            if isinstance(e, RedactionEvent) and e.redacts == spam_id
        )
        assert redaction.sender not in (alice.user_id, bob.user_id)  # the server's moderator account
        assert redaction.reason == "spam"

        # The kick, while alice is long-polling.
        def saw_kick(response) -> bool:
            room = response.rooms.join.get(room_id)
            return room is not None and any(
                isinstance(e, RoomMemberEvent) and e.state_key == bob.user_id and e.membership == "leave"
                for e in room.timeline.events
            )

        waiting = asyncio.create_task(sync_until(alice, saw_kick, "bob's kick"))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(kick_in_browser, driver, bob.user_id)
        kick_sync = await waiting
        kick = next(
            e
            for e in kick_sync.rooms.join[room_id].timeline.events
            if isinstance(e, RoomMemberEvent) and e.state_key == bob.user_id and e.membership == "leave"
        )
        assert kick.sender == redaction.sender != bob.user_id
        assert kick.content.get("reason") == "spamming"
        assert bob.user_id not in alice.rooms[room_id].users

        # bob's own client: the room moved to "leave", with his kick in its timeline.
        left = await sync_until(bob, lambda r: room_id in r.rooms.leave, "bob's own kick")
        assert any(
            isinstance(e, RoomMemberEvent) and e.state_key == bob.user_id and e.membership == "leave"
            and e.sender == kick.sender
            for e in left.rooms.leave[room_id].timeline.events
        ), left.rooms.leave[room_id].timeline.events
    finally:
        await alice.close()
        await bob.close()


def test_admin_redacts_and_kicks_while_a_nio_client_watches(browser) -> None:
    started = time.monotonic()
    # The workers serve the admin's CSS and JS themselves (embedded mode), as a browser expects.
    with live_server(workers=1, env={"MATRIX_SERVE_STATIC": "on"}) as server:
        make_server_admin(server)
        try:
            asyncio.run(asyncio.wait_for(_scenario(browser, server.url), WHOLE_TEST_BUDGET_S))
        except BaseException:
            print(server.logs()[-8000:])
            raise
    elapsed = time.monotonic() - started
    assert elapsed < WHOLE_TEST_BUDGET_S, f"the browser test took {elapsed:.1f}s"
