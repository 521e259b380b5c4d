"""Push reads: a user's effective push rules and their pushers."""

from __future__ import annotations

from typing import Any

from accounts.models import User
from push.models import Pusher, PushRuleState
from push.rules import merge_ruleset


def get_ruleset(user: User) -> dict[str, Any]:
    """The user's rule set in the ``GET /pushrules/`` shape: the defaults with the user's changes
    and rules merged in (one query)."""
    state = PushRuleState.objects.filter(user=user).only("overrides", "custom").first()
    if state is None:
        return merge_ruleset(user.mxid, {}, [])
    return merge_ruleset(user.mxid, state.overrides, state.custom)


def format_pusher(pusher: Pusher) -> dict[str, Any]:
    """A pusher in the ``GET /pushers`` shape; ``profile_tag`` only when set."""
    out: dict[str, Any] = {
        "pushkey": pusher.pushkey,
        "kind": pusher.kind,
        "app_id": pusher.app_id,
        "app_display_name": pusher.app_display_name,
        "device_display_name": pusher.device_display_name,
        "lang": pusher.lang,
        "data": pusher.data,
    }
    if pusher.profile_tag is not None:
        out["profile_tag"] = pusher.profile_tag
    return out


def list_pushers(user: User) -> list[dict[str, Any]]:
    """The user's pushers, oldest first, in the ``GET /pushers`` shape (one query)."""
    return [format_pusher(p) for p in Pusher.objects.filter(user=user).order_by("created_at", "id")]
