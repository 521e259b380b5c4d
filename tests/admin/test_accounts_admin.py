"""The accounts admin: a client of accounts.actions, checked end to end through the client API."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts import admin as accounts_admin
from accounts.models import Device, RegistrationToken, User
from tests.admin.conftest import changeform_post_data
from tests.matrix_client import MatrixClient, assert_matrix_error
from tests.matrix_client import TestUser as MatrixUser

pytestmark = pytest.mark.django_db

USERS = reverse("admin:accounts_user_changelist")
DEVICES = reverse("admin:accounts_device_changelist")
TOKENS = reverse("admin:accounts_registrationtoken_changelist")


def pk_of(user: MatrixUser) -> int:
    return User.objects.get(mxid=user.user_id).pk


def device_pk(user: MatrixUser, device_id: str | None = None) -> int:
    return Device.objects.get(user__mxid=user.user_id, device_id=device_id or user.device_id).pk


def login_body(user: MatrixUser, password: str) -> dict[str, object]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": password,
    }


def second_session(matrix: MatrixClient, user: MatrixUser) -> MatrixUser:
    data = matrix.login(user.user_id, user.password)
    return MatrixUser(user.user_id, data["access_token"], data["device_id"], user.password)


# -- users: list, search, page ------------------------------------------------------------------------


def test_user_list_shows_users_with_their_device_counts_and_searches(admin_http: Client, make_user) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    response = admin_http.get(USERS)
    assert response.status_code == 200
    page = response.content.decode()
    assert alice.user_id in page and bob.user_id in page
    alice_row = next(u for u in response.context["cl"].result_list if u.mxid == alice.user_id)
    assert alice_row.device_count == 1

    response = admin_http.get(USERS, {"q": "alic"})
    assert [u.mxid for u in response.context["cl"].result_list] == [alice.user_id]
    response = admin_http.get(USERS, {"q": bob.user_id})
    assert [u.mxid for u in response.context["cl"].result_list] == [bob.user_id]


def test_user_list_filters_on_active_and_staff(admin_http: Client, staff: User, make_user) -> None:
    make_user("alice")
    response = admin_http.get(USERS, {"is_staff__exact": "1"})
    assert [u.mxid for u in response.context["cl"].result_list] == [staff.mxid]
    response = admin_http.get(USERS, {"is_active__exact": "0"})
    assert list(response.context["cl"].result_list) == []


def test_user_page_shows_devices_read_only_and_no_secrets(admin_http: Client, make_user) -> None:
    alice = make_user("alice")
    user = User.objects.get(mxid=alice.user_id)
    response = admin_http.get(reverse("admin:accounts_user_change", args=[user.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert alice.device_id in page
    assert reverse("admin:accounts_device_logout", args=[device_pk(alice)]) in page
    assert user.password not in page and "password" not in response.context["adminform"].form.fields
    assert alice.access_token not in page
    assert list(response.context["adminform"].form.fields) == ["displayname"]
    (inline,) = response.context["inline_admin_formsets"]
    assert not inline.has_add_permission and not inline.has_change_permission
    assert not inline.has_delete_permission


def test_users_cannot_be_added_or_deleted_in_the_admin(admin_http: Client, make_user) -> None:
    alice = make_user("alice")
    assert admin_http.get(reverse("admin:accounts_user_add")).status_code == 403
    assert admin_http.get(reverse("admin:accounts_user_delete", args=[pk_of(alice)])).status_code == 403
    actions = admin_http.get(USERS).context["action_form"].fields["action"].choices
    names = [name for name, _ in actions]
    assert "delete_selected" not in names
    assert {"deactivate_users", "reset_password"} <= set(names)


def test_editing_the_display_name_changes_only_the_display_name(admin_http: Client, make_user) -> None:
    alice = make_user("alice")
    url = reverse("admin:accounts_user_change", args=[pk_of(alice)])
    data = changeform_post_data(admin_http.get(url), displayname="Alice A.", is_staff="on", is_active="")
    response = admin_http.post(url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    user = User.objects.get(mxid=alice.user_id)
    assert user.displayname == "Alice A."
    assert user.is_active and not user.is_staff  # read-only fields ignore posted values
    MatrixClient().whoami(alice)  # devices untouched


# -- deactivate ---------------------------------------------------------------------------------------


def test_deactivate_action_confirms_then_kills_every_token(admin_http: Client, make_user, matrix) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    alice2 = second_session(matrix, alice)

    response = admin_http.post(
        USERS, {"action": "deactivate_users", "_selected_action": [pk_of(alice)], "index": 0}
    )
    assert response.status_code == 200
    assert response.templates[0].name == "admin/accounts/user/deactivate_confirmation.html"
    matrix.whoami(alice)  # nothing happened yet

    response = admin_http.post(
        USERS, {"action": "deactivate_users", "_selected_action": [pk_of(alice)], "post": "yes"}
    )
    assert response.status_code == 302
    matrix.whoami(alice, expect=401)
    matrix.whoami(alice2, expect=401)
    matrix.whoami(bob)
    user = User.objects.get(mxid=alice.user_id)
    assert not user.is_active and user.deactivated_at is not None
    assert_matrix_error(
        matrix.post("login", login_body(alice, alice.password), expect=None), 403, "M_USER_DEACTIVATED"
    )


def test_deactivate_action_never_deactivates_the_admin_using_it(admin_http: Client, staff: User) -> None:
    response = admin_http.post(
        USERS, {"action": "deactivate_users", "_selected_action": [staff.pk], "post": "yes"}
    )
    assert response.status_code == 302
    staff.refresh_from_db()
    assert staff.is_active


# -- reset password -----------------------------------------------------------------------------------


def reset(client: Client, user: MatrixUser, **form: object) -> object:
    return client.post(USERS, {"action": "reset_password", "_selected_action": [pk_of(user)], **form})


def test_reset_password_asks_for_the_new_password_then_logs_out_every_device(
    admin_http: Client, make_user, matrix
) -> None:
    alice = make_user("alice")
    alice2 = second_session(matrix, alice)

    response = reset(admin_http, alice, index=0)
    assert response.status_code == 200
    form = response.context["form"]
    assert form.fields["logout_devices"].initial is True
    assert re.search(r'<input type="checkbox" name="logout_devices"[^>]* checked', response.content.decode())

    response = reset(
        admin_http, alice, apply="1", new_password1="new secret", new_password2="typo", logout_devices="on"
    )
    assert response.status_code == 200 and response.context["form"].errors
    matrix.login(alice.user_id, alice.password)  # unchanged

    response = reset(
        admin_http,
        alice,
        apply="1",
        new_password1="new secret",
        new_password2="new secret",
        logout_devices="on",
    )
    assert response.status_code == 302
    matrix.whoami(alice, expect=401)
    matrix.whoami(alice2, expect=401)
    assert_matrix_error(
        matrix.post("login", login_body(alice, alice.password), expect=None), 403, "M_FORBIDDEN"
    )
    new = matrix.login(alice.user_id, "new secret")
    matrix.whoami(new["access_token"])


def test_reset_password_can_leave_devices_logged_in(admin_http: Client, make_user, matrix) -> None:
    alice = make_user("alice")
    response = reset(admin_http, alice, apply="1", new_password1="new secret", new_password2="new secret")
    assert response.status_code == 302
    matrix.whoami(alice)
    matrix.login(alice.user_id, "new secret")


def test_reset_password_takes_exactly_one_user(admin_http: Client, make_user, matrix) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    response = admin_http.post(
        USERS,
        {
            "action": "reset_password",
            "_selected_action": [pk_of(alice), pk_of(bob)],
            "apply": "1",
            "new_password1": "x y z",
            "new_password2": "x y z",
            "logout_devices": "on",
        },
    )
    assert response.status_code == 302
    matrix.whoami(alice)
    matrix.login(bob.user_id, bob.password)


# -- admin rights ------------------------------------------------------------------------------------


def test_make_and_revoke_server_admin_actions(admin_http: Client, staff: User, make_user) -> None:
    alice = make_user("alice")
    admin_http.post(USERS, {"action": "make_server_admin", "_selected_action": [pk_of(alice)], "index": 0})
    user = User.objects.get(mxid=alice.user_id)
    assert user.is_staff and user.is_superuser
    admin_http.post(
        USERS, {"action": "revoke_server_admin", "_selected_action": [user.pk, staff.pk], "index": 0}
    )
    user.refresh_from_db()
    staff.refresh_from_db()
    assert not user.is_staff and not user.is_superuser
    assert staff.is_staff  # never revoke yourself


def test_non_admin_users_cannot_use_the_admin(make_user) -> None:
    alice = make_user("alice")
    client = Client()
    client.force_login(User.objects.get(mxid=alice.user_id))
    assert client.get(USERS).status_code == 302  # to the admin login page


# -- devices ------------------------------------------------------------------------------------------


def test_device_list_shows_last_seen_as_a_datetime(admin_http: Client, make_user, matrix) -> None:
    alice = make_user("alice")
    matrix.whoami(alice)  # records last_seen_*
    response = admin_http.get(DEVICES, {"q": "alice"})
    assert response.status_code == 200
    (device,) = response.context["cl"].result_list
    assert device.last_seen_ts is not None
    seen = accounts_admin.ms_to_datetime(device.last_seen_ts)
    assert seen is not None and seen.year >= 2024
    page = response.content.decode()
    assert alice.device_id in page and "127.0.0.1" in page
    assert str(device.last_seen_ts) not in page  # rendered as a date, not milliseconds


def test_log_out_selected_devices_action_revokes_their_tokens(admin_http: Client, make_user, matrix) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    alice2 = second_session(matrix, alice)
    response = admin_http.post(
        DEVICES,
        {"action": "log_out_devices", "_selected_action": [device_pk(alice), device_pk(bob)], "index": 0},
    )
    assert response.status_code == 302
    matrix.whoami(alice, expect=401)
    matrix.whoami(bob, expect=401)
    matrix.whoami(alice2)
    assert not Device.objects.filter(device_id__in=[alice.device_id, bob.device_id]).exists()


def test_log_out_one_device_from_its_page(admin_http: Client, make_user, matrix) -> None:
    alice = make_user("alice")
    alice2 = second_session(matrix, alice)
    url = reverse("admin:accounts_device_logout", args=[device_pk(alice)])
    response = admin_http.get(url)
    assert response.status_code == 200 and alice.device_id in response.content.decode()
    matrix.whoami(alice)  # a GET changes nothing

    response = admin_http.post(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:accounts_user_change", args=[pk_of(alice)])
    matrix.whoami(alice, expect=401)
    matrix.whoami(alice2)
    assert admin_http.post(url).status_code == 404


def test_devices_cannot_be_added_or_deleted_directly(admin_http: Client, make_user) -> None:
    alice = make_user("alice")
    assert admin_http.get(reverse("admin:accounts_device_add")).status_code == 403
    assert admin_http.get(reverse("admin:accounts_device_delete", args=[device_pk(alice)])).status_code == 403
    names = [name for name, _ in admin_http.get(DEVICES).context["action_form"].fields["action"].choices]
    assert "delete_selected" not in names and "log_out_devices" in names


def test_renaming_a_device_goes_through_update_device(admin_http: Client, make_user, monkeypatch) -> None:
    alice = make_user("alice")
    calls = []
    real = accounts_admin.update_device
    monkeypatch.setattr(accounts_admin, "update_device", lambda **kw: (calls.append(kw), real(**kw)))
    url = reverse("admin:accounts_device_change", args=[device_pk(alice)])
    response = admin_http.post(url, changeform_post_data(admin_http.get(url), display_name="Laptop"))
    assert response.status_code == 302
    assert [c["display_name"] for c in calls] == ["Laptop"]
    assert Device.objects.get(pk=device_pk(alice)).display_name == "Laptop"
    MatrixClient().whoami(alice)


# -- registration tokens --------------------------------------------------------------------------------


def token_validity(token: str) -> bool:
    response = MatrixClient().get(
        "/_matrix/client/v1/register/m.login.registration_token/validity", query={"token": token}
    )
    return response.json()["valid"]


def test_create_registration_token_generates_one_when_left_blank(admin_http: Client) -> None:
    response = admin_http.post(
        reverse("admin:accounts_registrationtoken_add"),
        {"token": "", "uses_allowed": "2", "expiry_time_0": "", "expiry_time_1": ""},
    )
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    (row,) = RegistrationToken.objects.all()
    assert re.fullmatch(r"[A-Za-z0-9]{16}", row.token)
    assert row.uses_allowed == 2 and row.completed == 0 and row.expiry_time is None
    assert response["Location"] == TOKENS
    assert token_validity(row.token)


def test_create_registration_token_with_a_chosen_name_and_expiry(admin_http: Client) -> None:
    add = reverse("admin:accounts_registrationtoken_add")
    response = admin_http.post(add, {"token": "bad token!", "expiry_time_0": "", "expiry_time_1": ""})
    assert response.status_code == 200 and "token" in response.context["adminform"].form.errors

    response = admin_http.post(
        add, {"token": "friends-2024", "expiry_time_0": "2000-01-01", "expiry_time_1": "00:00:00"}
    )
    assert response.status_code == 302
    row = RegistrationToken.objects.get(token="friends-2024")
    assert row.uses_allowed is None and row.expiry_time is not None
    assert not token_validity("friends-2024")  # already expired

    response = admin_http.post(add, {"token": "friends-2024", "expiry_time_0": "", "expiry_time_1": ""})
    assert response.status_code == 200 and "token" in response.context["adminform"].form.errors


def test_registration_token_completed_count_is_read_only(admin_http: Client) -> None:
    admin_http.post(reverse("admin:accounts_registrationtoken_add"), {"token": "abc", "uses_allowed": "1"})
    row = RegistrationToken.objects.get(token="abc")
    url = reverse("admin:accounts_registrationtoken_change", args=[row.pk])
    form = admin_http.get(url).context["adminform"].form
    assert set(form.fields) == {"uses_allowed", "expiry_time"}
    response = admin_http.post(
        url,
        {
            "uses_allowed": "5",
            "completed": "99",
            "token": "changed",
            "expiry_time_0": "",
            "expiry_time_1": "",
        },
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.token, row.uses_allowed, row.completed) == ("abc", 5, 0)


def test_registration_tokens_can_be_deleted(admin_http: Client) -> None:
    for name in ("one", "two"):
        admin_http.post(reverse("admin:accounts_registrationtoken_add"), {"token": name})
    pks = list(RegistrationToken.objects.filter(token="one").values_list("pk", flat=True))
    response = admin_http.post(TOKENS, {"action": "delete_selected", "_selected_action": pks, "post": "yes"})
    assert response.status_code == 302
    assert list(RegistrationToken.objects.values_list("token", flat=True)) == ["two"]
