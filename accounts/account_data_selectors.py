"""Reading account data (layer 2): one piece by key, and the ignored-users list (spec "Ignoring
Users"), which /sync and /messages apply to what they return."""

from __future__ import annotations

from typing import Any

from accounts.models import AccountData, User
from push.rules import default_ruleset

IGNORED_USER_LIST = "m.ignored_user_list"
TAG = "m.tag"
# The user's push rules, written by push.actions on every change; a user who never changed a rule
# has no row and gets the server defaults (spec: servers send push rules as this account data).
PUSH_RULES = "m.push_rules"


def default_global_account_data(user: User, type: str) -> dict[str, Any] | None:
    """What the server answers for global account data the user has no row for: the default push
    rules for ``m.push_rules``, nothing for any other type."""
    return default_ruleset(user.mxid) if type == PUSH_RULES else None


def find_account_data(user: User, *, room_id: str | None, type: str) -> dict[str, Any] | None:
    """The content of the user's account data ``type`` (global when ``room_id`` is None), or None."""
    content = (
        AccountData.objects.filter(user=user, room_id=room_id, type=type)
        .values_list("content", flat=True)
        .first()
    )
    if content is None and room_id is None:
        return default_global_account_data(user, type)
    return content


def ignored_users_in(content: object, *, own_mxid: str) -> frozenset[str]:
    """The user IDs an ``m.ignored_user_list`` content ignores (read leniently: the spec's shape is
    ``{"ignored_users": {user_id: {}}}``; anything else ignores nobody). A user never ignores
    themselves."""
    if not isinstance(content, dict):
        return frozenset()
    ignored = content.get("ignored_users")
    if not isinstance(ignored, dict):
        return frozenset()
    return frozenset(u for u in ignored if isinstance(u, str) and u != own_mxid)


def list_ignored_users(user: User) -> frozenset[str]:
    """Whom the user ignores now (one query)."""
    return ignored_users_in(find_account_data(user, room_id=None, type=IGNORED_USER_LIST), own_mxid=user.mxid)
