"""Client-Server API: user profiles and the user directory.

* GET /profile/{userId}, GET/PUT/DELETE /profile/{userId}/{displayname,avatar_url}. GETs need no
  token (the spec's GETs carry no security requirement). A changed profile is announced in every
  joined room by ``rooms.actions.set_profile`` (spec, "Profiles").
* POST /user_directory/search: users who share a room with the searcher or sit in a public room.

Decisions: an unknown *or deactivated* user has no profile: 404 M_NOT_FOUND (deactivation ends
the account; this server does not keep serving its profile). GET of an unset field is 404
M_NOT_FOUND too (spec 1.16: "There is no profile field with this key for this user"). Only
``displayname`` and ``avatar_url`` exist as fields (no ``m.tz`` or custom keys yet): any other key
is an unknown route.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Q
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import AccessTokenAuthentication
from accounts.models import User
from events.pdu import Membership as M
from matrixsrv.errors import BadJson, Forbidden, InvalidParam, MissingParam, NotFound
from matrixsrv.http import json_object, req_str
from matrixsrv.views import MatrixAPIView
from rooms import actions
from rooms.models import Membership

MAX_DISPLAYNAME_LENGTH = 256
MAX_AVATAR_URL_LENGTH = 1024
# mxc://<server-name>/<media-id>; the media ID is [A-Za-z0-9_-]+ (spec, "Matrix Content (mxc://) URIs").
MXC_URI_RE = re.compile(r"^mxc://[^/\s]+/[A-Za-z0-9_-]+$")
DEFAULT_SEARCH_LIMIT = 10
MAX_SEARCH_LIMIT = 100
PROFILE_FIELDS = ("displayname", "avatar_url")


def _profile_user(user_id: str) -> User:
    """The local, active user ``user_id``; 404 M_NOT_FOUND for anyone else (unknown or deactivated)."""
    user = User.objects.filter(mxid=user_id, is_active=True).only("mxid", "displayname", "avatar_url").first()
    if user is None:
        raise NotFound("Profile not found")
    return user


def _validated(field: str, value: Any) -> str | None:
    """The new value of a profile field from a PUT body (empty string clears the field)."""
    if not isinstance(value, str):
        raise BadJson(f"'{field}' must be a string")
    if field == "displayname":
        if len(value) > MAX_DISPLAYNAME_LENGTH:
            raise InvalidParam(f"'displayname' is longer than {MAX_DISPLAYNAME_LENGTH} characters")
        return value or None
    if len(value) > MAX_AVATAR_URL_LENGTH or (value and not MXC_URI_RE.match(value)):
        raise InvalidParam("'avatar_url' must be an mxc:// URI")
    return value or None


class _ProfileAuth(MatrixAPIView):
    """Token optional for GET (anonymous reads are allowed), required for everything else."""

    authentication_classes = [AccessTokenAuthentication]

    def get_permissions(self):  # type: ignore[no-untyped-def]
        return [AllowAny()] if self.request.method in ("GET", "HEAD") else super().get_permissions()


class ProfileView(_ProfileAuth):
    """GET /_matrix/client/v3/profile/{userId}"""

    def get(self, request: Request, user_id: str) -> Response:
        user = _profile_user(user_id)
        body = {f: getattr(user, f) for f in PROFILE_FIELDS if getattr(user, f)}
        return Response(body)


class ProfileFieldView(_ProfileAuth):
    """GET, PUT, DELETE /_matrix/client/v3/profile/{userId}/{displayname|avatar_url}"""

    field = ""  # set per route

    def get(self, request: Request, user_id: str) -> Response:
        value = getattr(_profile_user(user_id), self.field)
        if not value:
            raise NotFound(f"This user has no {self.field}")
        return Response({self.field: value})

    def put(self, request: Request, user_id: str) -> Response:
        body = json_object(request.data)
        self._check_own(request, user_id)
        if self.field not in body:
            raise MissingParam(f"Missing '{self.field}'")
        value = _validated(self.field, body[self.field])
        actions.set_profile(user=request.user, **{self.field: value})
        return Response({})

    def delete(self, request: Request, user_id: str) -> Response:
        self._check_own(request, user_id)
        actions.set_profile(user=request.user, **{self.field: None})
        return Response({})

    @staticmethod
    def _check_own(request: Request, user_id: str) -> None:
        if user_id != request.user.mxid:
            raise Forbidden("You may only change your own profile")


class UserDirectorySearchView(MatrixAPIView):
    """POST /_matrix/client/v3/user_directory/search

    Searches users who share a joined room with the searcher or are joined to a public room
    (join_rule "public"), matching ``search_term`` case-insensitively in the user ID or the display
    name. One query, whatever the number of rooms: the candidate set is a subquery.
    """

    def post(self, request: Request) -> Response:
        body = json_object(request.data)
        term = req_str(body, "search_term", max_length=1024).strip()
        limit = body.get("limit", DEFAULT_SEARCH_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise BadJson("'limit' must be a non-negative integer")
        limit = min(limit, MAX_SEARCH_LIMIT)
        if not term:
            return Response({"results": [], "limited": False})
        my_rooms = Membership.objects.filter(user=request.user, membership=M.JOIN).values("room_id")
        visible = Membership.objects.filter(membership=M.JOIN, user__isnull=False).filter(
            Q(room_id__in=my_rooms) | Q(room__join_rule="public")
        ).values("user_id")
        rows = list(
            User.objects.filter(is_active=True, pk__in=visible)
            .filter(Q(mxid__icontains=term) | Q(displayname__icontains=term))
            .order_by("mxid")
            .values_list("mxid", "displayname", "avatar_url")[: limit + 1]
        )
        results: list[dict[str, Any]] = []
        for mxid, displayname, avatar_url in rows[:limit]:
            entry: dict[str, Any] = {"user_id": mxid}
            if displayname:
                entry["display_name"] = displayname
            if avatar_url:
                entry["avatar_url"] = avatar_url
            results.append(entry)
        return Response({"results": results, "limited": len(rows) > limit})
