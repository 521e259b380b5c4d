"""The login fallback page (spec: "Login fallback"): a plain HTML form for clients that cannot log in
natively. It posts back to itself and calls the same login code as POST /login; on success it shows
the session and calls ``window.matrixLogin.onLogin(response)`` when a client embeds the page.

Non-credential /login parameters given in the query string (``?device_id=...``) are forwarded to the
login (spec v1.1), and the attempts count against the same rate limit as POST /login.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.throttles import LoginThrottle, check_rate_limit
from accounts.views import login_with_password
from matrixsrv.errors import LimitExceeded, MatrixError
from matrixsrv.views import matrix_methods

# The /login body fields a client may pass through the fallback's query string.
FORWARDED_PARAMETERS = ("device_id", "initial_device_display_name")
DEFAULT_DISPLAY_NAME = "Login fallback"


@matrix_methods("GET", "POST")
def login_fallback(request: HttpRequest) -> HttpResponse:
    """GET, POST /_matrix/client/v3/login/fallback (also /_matrix/static/client/login/)"""
    context: dict[str, object] = {"username": ""}
    status = 200
    response_headers: dict[str, str] = {}
    if request.method == "POST":
        username = request.POST.get("username", "")
        context["username"] = username
        body: dict[str, object] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": username},
            "password": request.POST.get("password", ""),
            "initial_device_display_name": DEFAULT_DISPLAY_NAME,
        }
        body.update({k: v for k in FORWARDED_PARAMETERS if (v := request.GET.get(k))})
        try:
            check_rate_limit(LoginThrottle, request)
            result = login_with_password(body)
        except MatrixError as err:
            context["error"] = err.message
            status = err.status
            if isinstance(err, LimitExceeded):
                retry_s = max(1, int(err.extra["retry_after_ms"]) // 1000)  # type: ignore[call-overload]
                context["error"] = f"Too many login attempts. Try again in {retry_s} seconds."
                response_headers["Retry-After"] = str(retry_s)
        else:
            context["result"] = result
    response = render(request, "accounts/login_fallback.html", context, status=status)
    for name, value in response_headers.items():
        response[name] = value
    return response
