"""``manage.py make_admin <localpart> [--password PW]``: make a server admin.

An existing user is promoted (``accounts.actions.set_admin``); an unknown one is registered as an
admin (``accounts.actions.register_user``, no device). Server admins log into /admin/ with their
localpart and password.
"""

from __future__ import annotations

import sys
from getpass import getpass
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.actions import change_password, register_user, set_admin
from accounts.selectors import find_local_user
from matrixsrv.errors import MatrixError
from matrixsrv.identifiers import UserID


class Command(BaseCommand):
    help = (
        "Make a server admin (may log into /admin/). An existing user is promoted; an unknown localpart "
        "is registered with the given password (prompted for when --password is missing and stdin is a "
        "terminal)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("localpart", help='The localpart ("alice") or full user ID ("@alice:server").')
        parser.add_argument(
            "--password",
            help="Password of a new user. For an existing user it replaces the password "
            "(devices stay logged in); leave it out to keep the current one.",
        )

    def handle(self, *args: Any, localpart: str, password: str | None, **options: Any) -> None:
        localpart = self._localpart(localpart)
        if password is not None and not password:
            raise CommandError("The password may not be empty.")
        user = find_local_user(localpart)
        if user is None:
            if password is None:
                password = self._prompt_password()
            try:
                user, _ = register_user(
                    localpart=localpart, password=password, inhibit_login=True, is_staff=True
                )
            except MatrixError as e:
                raise CommandError(f"Cannot register {localpart!r}: {e.message} ({e.errcode})") from None
            self.stdout.write(self.style.SUCCESS(f"Registered {user.mxid} as a server admin."))
            return
        if not user.is_active:
            raise CommandError(f"{user.mxid} is deactivated; deactivated accounts cannot be admins.")
        set_admin(user=user, is_admin=True)
        if password is not None:
            change_password(user=user, new_password=password, keep_device=None, logout_devices=False)
            self.stdout.write(self.style.SUCCESS(f"{user.mxid} is a server admin; password replaced."))
        else:
            self.stdout.write(self.style.SUCCESS(f"{user.mxid} is a server admin."))

    def _localpart(self, raw: str) -> str:
        raw = raw.strip()
        if not raw.startswith("@"):
            return raw
        try:
            user_id = UserID.parse(raw)
        except MatrixError:
            raise CommandError(f"Invalid user ID {raw!r}.") from None
        if user_id.server_name != settings.MATRIX["SERVER_NAME"]:
            raise CommandError(f"{raw} is not a user of this server ({settings.MATRIX['SERVER_NAME']}).")
        return user_id.localpart

    def _prompt_password(self) -> str:
        if not sys.stdin.isatty():
            raise CommandError("No --password given and stdin is not a terminal to ask for one.")
        password = getpass("Password: ")
        if not password:
            raise CommandError("The password may not be empty.")
        if getpass("Password (again): ") != password:
            raise CommandError("The passwords differ.")
        return password
