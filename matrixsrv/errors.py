"""Matrix errors: one class per errcode, each with the spec's HTTP status. Pure: no Django, no DRF.

Every error a client sees is ``{"errcode": ..., "error": ..., **extra}``; views raise these and the
one exception handler (matrixsrv/exception_handler.py) renders them.
"""

from __future__ import annotations


class MatrixError(Exception):
    errcode = "M_UNKNOWN"
    status = 400
    default_message = "Unknown error"

    def __init__(self, message: str | None = None, **extra: object) -> None:
        self.message = message or self.default_message
        self.extra = extra
        super().__init__(self.message)

    def to_json(self) -> dict[str, object]:
        return {"errcode": self.errcode, "error": self.message, **self.extra}



class Forbidden(MatrixError):
    errcode, status, default_message = "M_FORBIDDEN", 403, "Forbidden"


class NotFound(MatrixError):
    errcode, status, default_message = "M_NOT_FOUND", 404, "Not found"


class Unrecognized(MatrixError):
    errcode, status, default_message = "M_UNRECOGNIZED", 404, "Unrecognized request"


class UnsupportedMethod(Unrecognized):
    status, default_message = 405, "Method not allowed"


class MissingToken(MatrixError):
    errcode, status, default_message = "M_MISSING_TOKEN", 401, "Missing access token"


class UnknownToken(MatrixError):
    errcode, status, default_message = "M_UNKNOWN_TOKEN", 401, "Unknown access token"

    def __init__(self, message: str | None = None, **extra: object) -> None:
        extra.setdefault("soft_logout", False)
        super().__init__(message, **extra)


class NotJson(MatrixError):
    errcode, default_message = "M_NOT_JSON", "Content not JSON"


class BadJson(MatrixError):
    errcode, default_message = "M_BAD_JSON", "Bad JSON"


class MissingParam(MatrixError):
    errcode, default_message = "M_MISSING_PARAM", "Missing parameter"


class InvalidParam(MatrixError):
    errcode, default_message = "M_INVALID_PARAM", "Invalid parameter"


class TooLarge(MatrixError):
    errcode, status, default_message = "M_TOO_LARGE", 413, "Request too large"


class LimitExceeded(MatrixError):
    errcode, status, default_message = "M_LIMIT_EXCEEDED", 429, "Too many requests"


class UserInUse(MatrixError):
    errcode, default_message = "M_USER_IN_USE", "User ID already taken"


class InvalidUsername(MatrixError):
    errcode, default_message = "M_INVALID_USERNAME", "Invalid user name"


class Exclusive(MatrixError):
    errcode, default_message = "M_EXCLUSIVE", "User ID is reserved"


class UserDeactivated(MatrixError):
    errcode, status, default_message = "M_USER_DEACTIVATED", 403, "This account has been deactivated"


class RoomInUse(MatrixError):
    errcode, default_message = "M_ROOM_IN_USE", "Room alias already taken"


class UnsupportedRoomVersion(MatrixError):
    errcode, default_message = "M_UNSUPPORTED_ROOM_VERSION", "Unsupported room version"


class GuestAccessForbidden(MatrixError):
    errcode, status, default_message = "M_GUEST_ACCESS_FORBIDDEN", 403, "Guest access is not allowed"


class Unknown(MatrixError):
    errcode, default_message = "M_UNKNOWN", "Unknown error"


class InternalError(MatrixError):
    errcode, status, default_message = "M_UNKNOWN", 500, "Internal server error"


class UserInteractiveAuthRequired(MatrixError):
    """401 carrying the user-interactive auth state (flows, params, session, completed).

    The spec's UIA 401 body is the auth state itself, with errcode/error only after a failed stage.
    """

    errcode, status, default_message = "M_FORBIDDEN", 401, "Authentication required"

    def __init__(self, state: dict[str, object], error: MatrixError | None = None) -> None:
        super().__init__(error.message if error else None)
        self.state = state
        self.error = error

    def to_json(self) -> dict[str, object]:
        body = dict(self.state)
        if self.error is not None:
            body.update({"errcode": self.error.errcode, "error": self.error.message})
        return body


class BadAlias(MatrixError):
    errcode, default_message = "M_BAD_ALIAS", "Alias does not point to this room"
