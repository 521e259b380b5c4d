"""Client-Server API: push rules (pushrules.yaml), pushers (pusher.yaml) and the notifications list
(notifications.yaml).

A rule change returns the stream position of the user's new ``m.push_rules`` account data; the view
wakes the user's /sync waiters with it (``_wake``). That call belongs in ``push.actions``, but
``events.notify`` sits in a later app of the same layer, which push may not import; the write has
committed when the action returns, so the wake-up is sent at once (inside a test's transaction:
at its end, as ever).
"""

from __future__ import annotations

import time

from rest_framework.request import Request
from rest_framework.response import Response

from events.formatting import format_client_event
from events.notify import notify_on_commit
from matrixsrv.errors import InvalidParam, MissingParam
from matrixsrv.http import json_object, opt_bool, opt_str, query_int, req_str
from matrixsrv.views import MatrixAPIView
from push.actions import delete_rule, put_rule, set_pusher, set_rule_actions, set_rule_enabled
from push.rules import check_kind, find_rule
from push.selectors import get_ruleset, list_notifications, list_pushers


def _wake(request: Request, pos: int) -> None:
    """The user's other clients learn of the new rules from their next /sync (m.push_rules)."""
    notify_on_commit(pos=pos, users=[request.user.pk])


def _user_rule(request: Request, kind: str, rule_id: str) -> dict:
    """One rule of the user's effective rule set: 400 for a bad kind, 404 for an unknown rule."""
    check_kind(kind)
    return find_rule(get_ruleset(request.user), kind, rule_id)


class PushRulesView(MatrixAPIView):
    """GET /_matrix/client/v3/pushrules/

    All the user's rule sets (only ``global`` exists): the server defaults with the user's changes.
    """

    def get(self, request: Request) -> Response:
        return Response(get_ruleset(request.user))


class PushRulesGlobalView(MatrixAPIView):
    """GET /_matrix/client/v3/pushrules/global/"""

    def get(self, request: Request) -> Response:
        return Response(get_ruleset(request.user)["global"])


class PushRulesOfKindView(MatrixAPIView):
    """GET /_matrix/client/v3/pushrules/global/{kind}/

    Not in the current spec (older versions had it; Synapse still serves it): the rules of one kind.
    """

    def get(self, request: Request, kind: str) -> Response:
        check_kind(kind)
        return Response(get_ruleset(request.user)["global"][kind])


class PushRuleView(MatrixAPIView):
    """GET/PUT/DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}

    - PUT creates or replaces one of the user's rules, placed by ``?before=``/``?after=``;
      server-default (``.``) rule IDs are rejected.
    - DELETE removes one of the user's rules; server-default rules cannot be deleted.
    """

    def get(self, request: Request, kind: str, rule_id: str) -> Response:
        return Response(_user_rule(request, kind, rule_id))

    def put(self, request: Request, kind: str, rule_id: str) -> Response:
        params = request.query_params
        pos = put_rule(
            user=request.user,
            kind=kind,
            rule_id=rule_id,
            body=request.data,
            before=params.get("before") or None,
            after=params.get("after") or None,
        )
        _wake(request, pos)
        return Response({})

    def delete(self, request: Request, kind: str, rule_id: str) -> Response:
        _wake(request, delete_rule(user=request.user, kind=kind, rule_id=rule_id))
        return Response({})


class PushRuleEnabledView(MatrixAPIView):
    """GET/PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled"""

    def get(self, request: Request, kind: str, rule_id: str) -> Response:
        return Response({"enabled": _user_rule(request, kind, rule_id)["enabled"]})

    def put(self, request: Request, kind: str, rule_id: str) -> Response:
        check_kind(kind)
        body = json_object(request.data)
        if "enabled" not in body:
            raise MissingParam("Missing 'enabled'")
        if not isinstance(body["enabled"], bool):
            raise InvalidParam("'enabled' must be a boolean")
        pos = set_rule_enabled(user=request.user, kind=kind, rule_id=rule_id, enabled=body["enabled"])
        _wake(request, pos)
        return Response({})


class PushRuleActionsView(MatrixAPIView):
    """GET/PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions"""

    def get(self, request: Request, kind: str, rule_id: str) -> Response:
        return Response({"actions": _user_rule(request, kind, rule_id)["actions"]})

    def put(self, request: Request, kind: str, rule_id: str) -> Response:
        check_kind(kind)
        body = json_object(request.data)
        if "actions" not in body:
            raise MissingParam("Missing 'actions'")
        pos = set_rule_actions(user=request.user, kind=kind, rule_id=rule_id, actions=body["actions"])
        _wake(request, pos)
        return Response({})


class PushersView(MatrixAPIView):
    """GET /_matrix/client/v3/pushers"""

    def get(self, request: Request) -> Response:
        return Response({"pushers": list_pushers(request.user)})


class SetPusherView(MatrixAPIView):
    """POST /_matrix/client/v3/pushers/set

    ``kind`` null deletes the pusher; otherwise it is created or updated. Without ``append: true``
    other users' pushers with the same app_id and pushkey are removed.
    """

    def post(self, request: Request) -> Response:
        body = json_object(request.data)
        missing = [key for key in ("kind", "app_id", "pushkey") if key not in body]
        if missing:
            raise MissingParam(f"Missing parameters: {', '.join(missing)}")
        kind = body["kind"]
        if kind is not None and not isinstance(kind, str):
            raise InvalidParam("'kind' must be a string or null")
        set_pusher(
            user=request.user,
            device=request.auth.device,
            app_id=req_str(body, "app_id"),
            pushkey=req_str(body, "pushkey"),
            kind=kind,
            app_display_name=opt_str(body, "app_display_name"),
            device_display_name=opt_str(body, "device_display_name"),
            profile_tag=opt_str(body, "profile_tag"),
            lang=opt_str(body, "lang"),
            data=body.get("data"),
            append=opt_bool(body, "append", False),
        )
        return Response({})


class NotificationsView(MatrixAPIView):
    """GET /_matrix/client/v3/notifications

    The events the user was notified about, newest first: ``from`` (a ``next_token``), ``limit``,
    ``only=highlight`` (only those with the highlight tweak). ``next_token`` is absent on the last page.
    """

    def get(self, request: Request) -> Response:
        params = request.query_params
        only = params.get("only")
        page = list_notifications(
            user=request.user,
            from_token=params.get("from") or None,
            limit=query_int(params, "limit", None, minimum=0),
            only_highlight=only == "highlight",
        )
        now_ms = int(time.time() * 1000)
        body: dict = {
            "notifications": [
                {
                    "actions": n.actions,
                    "event": format_client_event(n.event, now_ms=now_ms, include_room_id=False),
                    "read": n.read,
                    "room_id": n.room_id,
                    "ts": n.ts,
                }
                for n in page.notifications
            ]
        }
        if page.next_token is not None:
            body["next_token"] = page.next_token
        return Response(body)

