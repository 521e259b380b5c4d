"""``manage.py show_config``: every setting of matrixsrv/config.py with the value in force.

Secrets are masked: the secret key, passwords inside URLs, and anything named like a password.
"""

from __future__ import annotations

import os
import re
import textwrap
from typing import Any

from django.core.management.base import BaseCommand

from matrixsrv import config

MASK = "********"
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*:)[^/?#]*(?P<tail>@)")
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD")


def mask_url_password(text: str) -> str:
    return _URL_PASSWORD.sub(rf"\g<head>{MASK}\g<tail>", text)


def mask(name: str, value: str) -> str:
    """The value fit to print: secrets hidden, URL passwords replaced."""
    if not value:
        return value
    if _SECRET_NAME.search(name):
        return MASK
    return mask_url_password(value)


def derived(name: str, value: str) -> str | None:
    """What an empty setting means in practice, for the settings whose empty value stands for one."""
    if value:
        return None
    if name == "DATABASE_URL":
        return f"sqlite:///{os.path.join(config.get('MATRIX_DATA_DIR'), 'matrixsrv.sqlite3')}"
    if name == "REDIS_URL":
        return "(no Redis) in-process channel layer and cache, one process only"
    if name == "MATRIX_SECRET_KEY":
        return f"generated, kept in {os.path.join(config.get('MATRIX_DATA_DIR'), 'secret_key')}"
    if name == "MATRIX_PUBLIC_BASEURL":
        return config.public_baseurl()
    return None


class Command(BaseCommand):
    help = "Print every matrixsrv setting (environment variable), its value in force and what it does."

    def handle(self, *args: Any, **options: Any) -> None:
        for name, setting in config.SETTINGS.items():
            value = setting.raw()
            source = "environment" if name in os.environ else "default"
            line = f"{name}={mask(name, value)}"
            note = f"[{source}]"
            if (meaning := derived(name, value)) is not None:
                note += f" in force: {mask_url_password(meaning)}"
            self.stdout.write(f"{self.style.SQL_FIELD(line)}  {note}")
            for help_line in textwrap.wrap(setting.help, width=96):
                self.stdout.write(f"    {help_line}")
