"""manage.py make_admin and show_config."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.actions import deactivate_user
from accounts.management.commands import make_admin as make_admin_module
from accounts.models import Device, User
from matrixsrv import config

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def can_use_admin(localpart: str, password: str) -> bool:
    client = Client()
    if not client.login(username=localpart, password=password):
        return False
    return client.get("/admin/").status_code == 200


def test_make_admin_registers_an_admin_who_can_log_into_the_admin(matrix) -> None:
    out = run("make_admin", "boss", "--password", "s3cret pw")
    assert "@boss:test.local" in out
    user = User.objects.get(localpart="boss")
    assert user.mxid == "@boss:test.local" and user.is_staff and user.is_superuser and user.is_active
    assert not Device.objects.filter(user=user).exists()  # inhibit_login: no device, no token
    assert can_use_admin("boss", "s3cret pw")
    assert not can_use_admin("boss", "wrong")

    # The real login form, as a browser uses it.
    response = Client().post("/admin/login/?next=/admin/", {"username": "boss", "password": "s3cret pw"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    # And the same password logs in through the client API.
    matrix.login("@boss:test.local", "s3cret pw")


def test_make_admin_promotes_an_existing_user_and_keeps_their_password(make_user, matrix) -> None:
    carol = make_user("carol")
    assert not can_use_admin("carol", carol.password)
    out = run("make_admin", "carol")
    assert "@carol:test.local is a server admin" in out
    assert can_use_admin("carol", carol.password)
    matrix.whoami(carol)  # still logged in
    assert User.objects.filter(is_staff=True).count() == 1


def test_make_admin_accepts_a_full_user_id(make_user) -> None:
    dave = make_user("dave")
    run("make_admin", "@dave:test.local")
    assert can_use_admin("dave", dave.password)
    with pytest.raises(CommandError, match="not a user of this server"):
        run("make_admin", "@dave:elsewhere.example")


def test_make_admin_with_password_replaces_an_existing_password_without_logging_out(
    make_user, matrix
) -> None:
    erin = make_user("erin")
    run("make_admin", "erin", "--password", "brand new")
    assert can_use_admin("erin", "brand new")
    assert not can_use_admin("erin", erin.password)
    matrix.whoami(erin)


def test_make_admin_refuses_without_a_password_when_it_cannot_ask(monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="stdin is not a terminal"):
        run("make_admin", "boss")
    assert not User.objects.filter(localpart="boss").exists()


def test_make_admin_prompts_for_the_password_on_a_terminal(monkeypatch) -> None:
    stdin = io.StringIO("")
    stdin.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stdin", stdin)
    answers = iter(["typed pw", "typed pw"])
    monkeypatch.setattr(make_admin_module, "getpass", lambda prompt="": next(answers))
    run("make_admin", "boss")
    assert can_use_admin("boss", "typed pw")

    answers = iter(["one", "two"])
    with pytest.raises(CommandError, match="differ"):
        run("make_admin", "frank")


def test_make_admin_rejects_bad_names_and_deactivated_users(make_user) -> None:
    with pytest.raises(CommandError, match="M_INVALID_USERNAME"):
        run("make_admin", "Not Valid!", "--password", "pw")
    with pytest.raises(CommandError, match="empty"):
        run("make_admin", "gina", "--password", "")
    henry = make_user("henry")
    deactivate_user(user=User.objects.get(mxid=henry.user_id))
    with pytest.raises(CommandError, match="deactivated"):
        run("make_admin", "henry")
    assert not User.objects.get(localpart="henry").is_staff


def test_show_config_prints_every_setting_and_masks_secrets(monkeypatch) -> None:
    monkeypatch.setenv("MATRIX_SECRET_KEY", "very-secret-key-value")
    monkeypatch.setenv("DATABASE_URL", "postgres://matrix:db-password@db.internal:5432/matrix")
    monkeypatch.setenv("REDIS_URL", "redis://:redis-password@redis:6379/0")
    monkeypatch.setenv("MATRIX_PORT", "9999")
    out = run("show_config")
    for name in config.SETTINGS:
        assert f"\n{name}=" in "\n" + out, name
    assert "very-secret-key-value" not in out and "MATRIX_SECRET_KEY=********" in out
    assert "db-password" not in out and "postgres://matrix:********@db.internal:5432/matrix" in out
    assert "redis-password" not in out
    assert "MATRIX_PORT=9999  [environment]" in out
    assert config.SETTINGS["MATRIX_SERVER_NAME"].help in out.replace("\n    ", " ")


def test_show_config_explains_empty_settings(monkeypatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "MATRIX_SECRET_KEY", "MATRIX_PUBLIC_BASEURL"):
        monkeypatch.delenv(name, raising=False)
    out = run("show_config")
    assert "DATABASE_URL=  [default] in force: sqlite:///" in out
    assert "MATRIX_PUBLIC_BASEURL=  [default] in force: http" in out
