"""Reads for accounts."""

from __future__ import annotations

from django.conf import settings

from accounts.models import AccessToken, Device, User
from accounts.tokens import hash_token
from matrixsrv.errors import NotFound
from matrixsrv.identifiers import UserID


def find_access_token(token: str) -> AccessToken | None:
    """The live token row with its user and device, in one query; None if unknown or revoked."""
    return (
        AccessToken.objects.select_related("user", "device")
        .filter(token_hash=hash_token(token), user__is_active=True)
        .first()
    )


def find_local_user(identifier: str) -> User | None:
    """A local user by localpart or full user ID (case-insensitive, as clients type them)."""
    identifier = identifier.strip()
    if identifier.startswith("@"):
        try:
            parsed = UserID.parse(identifier)
        except Exception:
            return None
        if parsed.server_name != settings.MATRIX["SERVER_NAME"]:
            return None
        identifier = parsed.localpart
    return User.objects.filter(localpart=identifier.lower()).first()


def get_local_user_by_mxid(mxid: str) -> User:
    user = User.objects.filter(mxid=mxid).first()
    if user is None:
        raise NotFound("Unknown user")
    return user


def list_devices(user: User) -> list[Device]:
    return list(Device.objects.filter(user=user).order_by("device_id"))


def get_device(user: User, device_id: str) -> Device:
    device = Device.objects.filter(user=user, device_id=device_id).first()
    if device is None:
        raise NotFound("Unknown device")
    return device


def is_localpart_taken(localpart: str) -> bool:
    return User.objects.filter(localpart=localpart).exists()
