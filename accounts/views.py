"""Client-Server API: registration, login, logout, account management and devices."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import actions
from accounts.actions import Session, check_username_available
from accounts.selectors import find_local_user, get_device, list_devices
from accounts.throttles import (
    LoginThrottle,
    RegisterAvailableThrottle,
    RegisterThrottle,
    RegistrationTokenValidityThrottle,
)
from accounts.uia import PASSWORD, REGISTRATION_TOKEN, registration_flows, require_user_interactive_auth
from e2ee import actions as e2ee_actions  # device deletions: keys go too, a device-list change
from matrixsrv.errors import (
    Forbidden,
    GuestAccessForbidden,
    InvalidParam,
    MissingParam,
    Unknown,
    UserDeactivated,
)
from matrixsrv.http import json_object, opt_bool, opt_dict, opt_str, opt_str_list, req_str
from matrixsrv.views import MatrixAPIView

PASSWORD_FLOWS = [[PASSWORD]]
THIRD_PARTY_IDENTIFIERS = ("m.id.thirdparty", "m.id.phone")


def _session_response(session: Session) -> dict[str, Any]:
    return {
        "user_id": session.user.mxid,
        "access_token": session.access_token,
        "device_id": session.device.device_id,
        "home_server": settings.MATRIX["SERVER_NAME"],
    }


class RegisterView(MatrixAPIView):
    """POST /_matrix/client/v3/register

    User-interactive auth with ``m.login.dummy`` (or ``m.login.registration_token`` when the server
    requires tokens). The username is checked before any auth, so a taken name fails fast.
    """

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [RegisterThrottle]

    def post(self, request: Request) -> Response:
        kind = request.query_params.get("kind", "user")
        if kind == "guest":
            raise GuestAccessForbidden("Guest registration is disabled on this server")
        if kind != "user":
            raise InvalidParam("Unknown kind")
        if settings.MATRIX["REGISTRATION"] == "closed":
            raise Forbidden("Registration has been disabled")
        body = json_object(request.data)
        username = opt_str(body, "username")  # its length is checked as M_INVALID_USERNAME below
        password = opt_str(body, "password", max_length=512)
        device_id = opt_str(body, "device_id", max_length=255)
        display_name = opt_str(body, "initial_device_display_name", max_length=512)
        inhibit_login = opt_bool(body, "inhibit_login", False)
        if username is not None:
            check_username_available(username)
        results = require_user_interactive_auth(body, flows=registration_flows())
        user, session = actions.register_user(
            localpart=username,
            password=password,
            device_id=device_id,
            initial_device_display_name=display_name,
            inhibit_login=inhibit_login,
            registration_token=results.get(REGISTRATION_TOKEN),
        )
        if session is None:
            return Response({"user_id": user.mxid, "home_server": settings.MATRIX["SERVER_NAME"]})
        return Response(_session_response(session))


class RegisterAvailableView(MatrixAPIView):
    """GET /_matrix/client/v3/register/available"""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [RegisterAvailableThrottle]

    def get(self, request: Request) -> Response:
        username = request.query_params.get("username")
        if not username:
            raise MissingParam("Missing 'username'")
        check_username_available(username)
        return Response({"available": True})


class RegistrationTokenValidityView(MatrixAPIView):
    """GET /_matrix/client/v1/register/m.login.registration_token/validity"""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [RegistrationTokenValidityThrottle]

    def get(self, request: Request) -> Response:
        from accounts.models import RegistrationToken

        token = request.query_params.get("token")
        if not token:
            raise MissingParam("Missing 'token'")
        row = RegistrationToken.objects.filter(token=token).first()
        return Response({"valid": bool(row and row.is_usable())})


class LoginView(MatrixAPIView):
    """GET, POST /_matrix/client/v3/login"""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [LoginThrottle]

    def get(self, request: Request) -> Response:
        return Response({"flows": [{"type": "m.login.password"}]})

    def post(self, request: Request) -> Response:
        body = json_object(request.data)
        return Response(login_with_password(body))


def login_with_password(body: dict[str, Any]) -> dict[str, Any]:
    """The body of POST /login, shared with the login fallback page."""
    login_type = body.get("type")
    if login_type != "m.login.password":
        raise Unknown(f"Unknown login type {login_type!r}")
    identifier = opt_dict(body, "identifier")
    if identifier is not None:
        id_type = identifier.get("type")
        if id_type in THIRD_PARTY_IDENTIFIERS:
            # Spec, "Login": a 3PID the homeserver does not know gets 403. This server binds none.
            raise Forbidden("No account is bound to this third-party identifier")
        if id_type != "m.id.user":
            raise Unknown(f"Unknown login identifier type {id_type!r}")
        who = req_str(identifier, "user", max_length=255)
    elif "user" not in body and "medium" in body:  # the deprecated top-level 3PID form
        raise Forbidden("No account is bound to this third-party identifier")
    else:
        who = req_str(body, "user", max_length=255)  # legacy top-level "user" (the seed's curl)
    password = req_str(body, "password", max_length=512)
    device_id = opt_str(body, "device_id", max_length=255)
    display_name = opt_str(body, "initial_device_display_name", max_length=512)
    user = find_local_user(who)
    if user is None or not user.check_password(password):
        if user is not None and not user.is_active:
            raise UserDeactivated()
        raise Forbidden("Invalid username or password")
    if not user.is_active:
        raise UserDeactivated()
    session = actions.start_session(user=user, device_id=device_id, display_name=display_name)
    response = _session_response(session)
    response["well_known"] = {"m.homeserver": {"base_url": settings.MATRIX["PUBLIC_BASEURL"]}}
    return response


class WhoamiView(MatrixAPIView):
    """GET /_matrix/client/v3/account/whoami"""

    def get(self, request: Request) -> Response:
        return Response({"user_id": request.user.mxid, "device_id": request.auth.device.device_id, "is_guest": False})


class ThreePidsView(MatrixAPIView):
    """GET /_matrix/client/v3/account/3pid

    This server binds no third-party identifiers (e-mail, phone) to accounts: there is no field for
    one and no route adds one (``m.3pid_changes`` is false), so every user's list is empty. Clients
    (Element) read it at start-up.
    """

    def get(self, request: Request) -> Response:
        return Response({"threepids": []})


class LogoutView(MatrixAPIView):
    """POST /_matrix/client/v3/logout"""

    def post(self, request: Request) -> Response:
        e2ee_actions.logout(device=request.auth.device)
        return Response({})


class LogoutAllView(MatrixAPIView):
    """POST /_matrix/client/v3/logout/all"""

    def post(self, request: Request) -> Response:
        e2ee_actions.logout_all(user=request.user)
        return Response({})


class ChangePasswordView(MatrixAPIView):
    """POST /_matrix/client/v3/account/password"""

    def post(self, request: Request) -> Response:
        body = json_object(request.data)
        new_password = req_str(body, "new_password", max_length=512)
        logout_devices = opt_bool(body, "logout_devices", True)
        require_user_interactive_auth(body, flows=PASSWORD_FLOWS, user=request.user)
        e2ee_actions.change_password(
            user=request.user, new_password=new_password, keep_device=request.auth.device, logout_devices=logout_devices
        )
        return Response({})


class DeactivateAccountView(MatrixAPIView):
    """POST /_matrix/client/v3/account/deactivate"""

    def post(self, request: Request) -> Response:
        body = json_object(request.data)
        opt_bool(body, "erase", False)
        require_user_interactive_auth(body, flows=PASSWORD_FLOWS, user=request.user)
        e2ee_actions.deactivate_user(user=request.user)
        return Response({"id_server_unbind_result": "no-support"})


def _device_json(device: Any) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "display_name": device.display_name,
        "last_seen_ip": device.last_seen_ip,
        "last_seen_ts": device.last_seen_ts,
    }


class DevicesView(MatrixAPIView):
    """GET /_matrix/client/v3/devices"""

    def get(self, request: Request) -> Response:
        return Response({"devices": [_device_json(d) for d in list_devices(request.user)]})


class DeviceView(MatrixAPIView):
    """GET, PUT, DELETE /_matrix/client/v3/devices/{deviceId}"""

    def get(self, request: Request, device_id: str) -> Response:
        return Response(_device_json(get_device(request.user, device_id)))

    def put(self, request: Request, device_id: str) -> Response:
        body = json_object(request.data)
        device = get_device(request.user, device_id)
        if "display_name" in body:
            actions.update_device(device=device, display_name=opt_str(body, "display_name", max_length=512))
        return Response({})

    def delete(self, request: Request, device_id: str) -> Response:
        body = json_object(request.data)
        get_device(request.user, device_id)
        require_user_interactive_auth(body, flows=PASSWORD_FLOWS, user=request.user)
        e2ee_actions.delete_devices(user=request.user, device_ids=[device_id])
        return Response({})


class DeleteDevicesView(MatrixAPIView):
    """POST /_matrix/client/v3/delete_devices"""

    def post(self, request: Request) -> Response:
        body = json_object(request.data)
        device_ids = opt_str_list(body, "devices")
        if device_ids is None:
            raise MissingParam("Missing 'devices'")
        require_user_interactive_auth(body, flows=PASSWORD_FLOWS, user=request.user)
        e2ee_actions.delete_devices(user=request.user, device_ids=device_ids)
        return Response({})
