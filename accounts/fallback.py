"""The login fallback page (spec: "Login fallback"): a plain HTML form for clients that cannot log in
natively. It posts back to itself and calls the same login code as POST /login; on success it shows
the session and calls ``window.matrixLogin.onLogin(response)`` when a client embeds the page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts.views import login_with_password
from matrixsrv.errors import MatrixError


@csrf_exempt
@require_http_methods(["GET", "POST"])
def login_fallback(request: HttpRequest) -> HttpResponse:
    """GET, POST /_matrix/client/v3/login/fallback (also /_matrix/static/client/login/)"""
    context: dict[str, object] = {"username": ""}
    status = 200
    if request.method == "POST":
        username = request.POST.get("username", "")
        context["username"] = username
        try:
            result = login_with_password(
                {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": username},
                    "password": request.POST.get("password", ""),
                    "initial_device_display_name": "Login fallback",
                }
            )
        except MatrixError as err:
            context["error"] = err.message
            status = err.status
        else:
            context["result"] = result
    return render(request, "accounts/login_fallback.html", context, status=status)
