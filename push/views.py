"""Client-Server API: push rules."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from matrixsrv.views import MatrixAPIView
from push.rules import default_ruleset


class PushRulesView(MatrixAPIView):
    """GET /_matrix/client/v3/pushrules/

    The user's push rules: the spec's predefined rule set (editing comes with the push-rule API).
    """

    def get(self, request: Request) -> Response:
        return Response(default_ruleset(request.user.mxid))
