"""matrix-nio, a real Matrix client library, against the live homeserver: the account lifecycle."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from nio import AsyncClient, LoginResponse, LogoutResponse, RegisterResponse, WhoamiError, WhoamiResponse

pytestmark = pytest.mark.e2e


async def _account_lifecycle(url: str) -> None:
    username = f"nio{secrets.token_hex(4)}"
    password = "correct horse battery staple"
    user_id = f"@{username}:localhost"

    # nio 0.26's register() sends {"auth": {"type": "m.login.dummy"}} at once, with no UIA session:
    # the server completes the one-stage dummy flow in that single request.
    registrar = AsyncClient(url)
    try:
        registered = await registrar.register(username, password, device_name="registrar")
        assert isinstance(registered, RegisterResponse), registered
        assert registered.user_id == user_id
        assert registered.access_token and registered.device_id

        client = AsyncClient(url, user_id)
        try:
            login = await client.login(password, device_name="nio e2e")
            assert isinstance(login, LoginResponse), login
            assert login.user_id == user_id
            assert login.access_token and login.access_token != registered.access_token
            assert login.device_id and login.device_id != registered.device_id

            whoami = await client.whoami()
            assert isinstance(whoami, WhoamiResponse), whoami
            assert whoami.user_id == user_id
            assert whoami.device_id == login.device_id

            logout = await client.logout()
            assert isinstance(logout, LogoutResponse), logout

            client.access_token = login.access_token  # nio forgets the token on logout; reuse it
            after = await client.whoami()
            assert isinstance(after, WhoamiError), after
            assert after.status_code == "M_UNKNOWN_TOKEN"
        finally:
            await client.close()

        # Logging one device out leaves the registration's device signed in.
        still = await registrar.whoami()
        assert isinstance(still, WhoamiResponse), still
        assert still.user_id == user_id and still.device_id == registered.device_id
    finally:
        await registrar.close()


def test_nio_registers_logs_in_and_out(live_server_url: str) -> None:
    asyncio.run(_account_lifecycle(live_server_url))
