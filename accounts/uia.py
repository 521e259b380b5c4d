"""User-interactive authentication (spec: "User-Interactive Authentication API").

A request that needs UIA is first answered 401 with the flows and a session; the client then repeats
it with ``auth: {type, session, ...}`` until one flow's stages are all completed. Sessions live in
the database so any worker can continue one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from accounts.models import RegistrationToken, UIASession, User
from accounts.selectors import find_local_user
from accounts.tokens import new_session_id
from matrixsrv.errors import Forbidden, MatrixError, MissingParam, Unknown, UserInteractiveAuthRequired

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"
SESSION_LIFETIME = timedelta(minutes=30)


def registration_flows() -> list[list[str]]:
    if settings.MATRIX["REGISTRATION"] == "token":
        return [[REGISTRATION_TOKEN]]
    return [[DUMMY]]


def _state(session: UIASession, flows: Sequence[Sequence[str]]) -> dict[str, Any]:
    state: dict[str, Any] = {
        "flows": [{"stages": list(f)} for f in flows],
        "params": {},
        "session": session.session_id,
    }
    if session.completed:
        state["completed"] = list(session.completed)
    return state


def _get_session(session_id: Any, user: User | None) -> UIASession:
    if not isinstance(session_id, str):
        raise Unknown("Unknown session")
    session = UIASession.objects.filter(
        session_id=session_id, created_at__gt=timezone.now() - SESSION_LIFETIME
    ).first()
    if session is None or (user is not None and session.user_id != user.pk):
        raise Unknown("Unknown session")
    return session


def _check_password(auth: dict[str, Any], user: User | None) -> None:
    identifier = auth.get("identifier")
    who = identifier.get("user") if isinstance(identifier, dict) else auth.get("user")
    password = auth.get("password")
    if not isinstance(password, str):
        raise MissingParam("Missing password")
    candidate = find_local_user(who) if isinstance(who, str) else user
    if user is None or candidate is None or candidate.pk != user.pk or not user.check_password(password):
        raise Forbidden("Invalid password")


def _check_registration_token(auth: dict[str, Any], session: UIASession) -> None:
    token = auth.get("token")
    if not isinstance(token, str):
        raise MissingParam("Missing registration token")
    row = RegistrationToken.objects.filter(token=token).first()
    if row is None or not row.is_usable():
        raise Forbidden("Invalid registration token")
    session.results[REGISTRATION_TOKEN] = token


def require_user_interactive_auth(
    body: dict[str, Any], *, flows: Sequence[Sequence[str]], user: User | None = None
) -> dict[str, Any]:
    """Return the completed session's results once a whole flow is done; else raise the 401.

    Not atomic on purpose: the session row must survive the 401 that carries it.
    """
    auth = body.get("auth")
    if not isinstance(auth, dict):
        session = UIASession.objects.create(session_id=new_session_id(), user=user)
        raise UserInteractiveAuthRequired(_state(session, flows))
    if "session" in auth:
        session = _get_session(auth["session"], user)
    else:  # clients (and the seed's curl) may complete a one-stage flow without a session
        session = UIASession(session_id=new_session_id(), user=user)
    stage = auth.get("type")
    allowed = {s for f in flows for s in f}
    error: MatrixError | None = None
    # Spec: an auth dict with only the session re-asks for the state (a stage may have been completed
    # out of band); that is no failed attempt, so the 401 carries no errcode.
    polling = stage is None and session.pk is not None
    try:
        if polling:
            pass
        elif stage not in allowed:
            raise Forbidden(f"Unsupported authentication type {stage!r}")
        elif stage == PASSWORD:
            _check_password(auth, user)
        elif stage == REGISTRATION_TOKEN:
            _check_registration_token(auth, session)
        if not polling and stage not in session.completed:
            session.completed.append(stage)
    except MatrixError as exc:
        error = exc
    if error is None and any(set(f) <= set(session.completed) for f in flows):
        if session.pk is not None:
            session.delete()
        return dict(session.results)
    session.save()
    raise UserInteractiveAuthRequired(_state(session, flows), error)
