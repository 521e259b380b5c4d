from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.actions import register_user
from accounts.models import User


@pytest.fixture
def staff(db: None) -> User:
    """A server admin, made the way make_admin makes one."""
    user, _ = register_user(localpart="root", password="root password", inhibit_login=True, is_staff=True)
    return user


@pytest.fixture
def admin_http(staff: User) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def changeform_post_data(response: Any, **changes: Any) -> dict[str, Any]:
    """What a browser would post back from an admin change page (main form and inline formsets)."""
    data: dict[str, Any] = {}

    def add(prefix_name: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool):
            if value:
                data[prefix_name] = "on"
            return
        data[prefix_name] = value

    form = response.context["adminform"].form
    for name in form.fields:
        add(form.add_prefix(name), form[name].value())
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for name in formset.management_form.fields:
            add(formset.management_form.add_prefix(name), formset.management_form[name].value())
        for sub in formset.forms:
            for name in sub.fields:
                add(sub.add_prefix(name), sub[name].value())
    data.update(changes)
    return data
