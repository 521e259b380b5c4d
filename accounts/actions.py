"""Account writes: registering, logging in and out, passwords, devices, deactivation.

The API views, the admin site and management commands all call these; nothing else writes accounts.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import AccessToken, Device, RegistrationToken, User, make_mxid
from accounts.selectors import is_localpart_taken
from accounts.tokens import hash_token, new_access_token, new_device_id, new_registration_token
from matrixsrv.errors import Exclusive, Forbidden, UserInUse
from matrixsrv.identifiers import check_localpart, random_localpart


@dataclass(frozen=True)
class Session:
    """What a client gets back from register/login."""

    user: User
    device: Device
    access_token: str


def check_username_available(localpart: str) -> None:
    """Raise InvalidUsername / Exclusive / UserInUse unless ``localpart`` can be registered."""
    check_localpart(localpart, settings.MATRIX["SERVER_NAME"])
    reserved = settings.MATRIX["RESERVED_USERNAMES"]
    if (reserved and re.search(reserved, localpart)) or localpart == settings.MATRIX.get("MODERATOR_LOCALPART"):
        raise Exclusive("This user ID is reserved by the server")  # the moderator: moderation.actions
    if is_localpart_taken(localpart):
        raise UserInUse("User ID already taken")


@transaction.atomic
def register_user(
    *,
    localpart: str | None,
    password: str | None,
    device_id: str | None = None,
    initial_device_display_name: str | None = None,
    inhibit_login: bool = False,
    registration_token: str | None = None,
    is_staff: bool = False,
) -> tuple[User, Session | None]:
    """Create a user (and, unless ``inhibit_login``, its first device and access token)."""
    if localpart is None:
        localpart = _unused_random_localpart()
    check_username_available(localpart)
    if registration_token is not None:
        _consume_registration_token(registration_token)
    # Synapse's default: the display name starts as the localpart (changed through the profile API).
    user = User(localpart=localpart, mxid=make_mxid(localpart), displayname=localpart, is_staff=is_staff,
                is_superuser=is_staff)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:  # lost a race with a concurrent registration of the same name
        raise UserInUse("User ID already taken") from None
    if inhibit_login:
        return user, None
    return user, start_session(user=user, device_id=device_id, display_name=initial_device_display_name)


def _unused_random_localpart() -> str:
    while True:
        localpart = random_localpart()
        if not is_localpart_taken(localpart):
            return localpart


def _consume_registration_token(token: str) -> None:
    consumed = (
        RegistrationToken.objects.filter(token=token)
        .filter(Q(expiry_time__isnull=True) | Q(expiry_time__gt=timezone.now()))
        .filter(Q(uses_allowed__isnull=True) | Q(completed__lt=F("uses_allowed")))
        .update(completed=F("completed") + 1)
    )
    if not consumed:
        raise Forbidden("Registration token is not valid")


@transaction.atomic
def start_session(*, user: User, device_id: str | None, display_name: str | None) -> Session:
    """Log ``user`` in on ``device_id`` (new or existing); any older token of that device dies."""
    if not user.is_active:
        raise Forbidden("This account has been deactivated")
    if device_id:
        device, created = Device.objects.get_or_create(
            user=user, device_id=device_id, defaults={"display_name": display_name}
        )
        if not created:
            AccessToken.objects.filter(device=device).delete()
    else:
        device = _create_device_with_new_id(user, display_name)
    token = new_access_token()
    AccessToken.objects.create(token_hash=hash_token(token), user=user, device=device)
    return Session(user=user, device=device, access_token=token)


def _create_device_with_new_id(user: User, display_name: str | None) -> Device:
    while True:
        try:
            with transaction.atomic():
                return Device.objects.create(user=user, device_id=new_device_id(), display_name=display_name)
        except IntegrityError:
            continue


def record_device_seen(device: Device, *, ip: str | None, user_agent: str | None) -> None:
    """Keep ``last_seen_*`` fresh cheaply: at most one write a minute per device (or on a new IP)."""
    now_ms = int(time.time() * 1000)
    if device.last_seen_ts is not None and now_ms - device.last_seen_ts < 60_000 and device.last_seen_ip == ip:
        return
    Device.objects.filter(pk=device.pk).update(
        last_seen_ts=now_ms, last_seen_ip=ip, last_seen_user_agent=(user_agent or "")[:512]
    )
    device.last_seen_ts, device.last_seen_ip = now_ms, ip


def logout(*, device: Device) -> None:
    """Spec: the token dies and the device it belongs to is deleted."""
    device.delete()


def logout_all(*, user: User) -> None:
    Device.objects.filter(user=user).delete()


def delete_devices(*, user: User, device_ids: list[str]) -> None:
    Device.objects.filter(user=user, device_id__in=device_ids).delete()


def update_device(*, device: Device, display_name: str | None) -> None:
    device.display_name = display_name
    device.save(update_fields=["display_name"])


@transaction.atomic
def change_password(*, user: User, new_password: str, keep_device: Device | None, logout_devices: bool) -> None:
    """Set a new password; unless told not to, every other device (and its tokens) is logged out."""
    user.set_password(new_password)
    user.save(update_fields=["password"])
    if logout_devices:
        others = Device.objects.filter(user=user)
        if keep_device is not None:
            others = others.exclude(pk=keep_device.pk)
        others.delete()


@transaction.atomic
def deactivate_user(*, user: User) -> None:
    """The user can no longer log in and every token dies. The user ID is never reused."""
    user.is_active = False
    user.deactivated_at = timezone.now()
    user.set_unusable_password()
    user.save(update_fields=["is_active", "deactivated_at", "password"])
    Device.objects.filter(user=user).delete()


def set_admin(*, user: User, is_admin: bool = True) -> None:
    user.is_staff = user.is_superuser = is_admin
    user.save(update_fields=["is_staff", "is_superuser"])


def set_displayname(*, user: User, displayname: str | None) -> None:
    """The account's display name. (Profile changes are also sent as m.room.member events in the
    user's joined rooms once the profile API exists; until then this only changes the account.)"""
    user.displayname = displayname
    user.save(update_fields=["displayname"])


def create_registration_token(
    *, token: str | None, uses_allowed: int | None, expiry_time: datetime | None
) -> RegistrationToken:
    """A registration token (random when ``token`` is None) for MATRIX_REGISTRATION=token."""
    return RegistrationToken.objects.create(
        token=token or new_registration_token(), uses_allowed=uses_allowed, expiry_time=expiry_time
    )


def update_registration_token(
    *, registration_token: RegistrationToken, uses_allowed: int | None, expiry_time: datetime | None
) -> None:
    registration_token.uses_allowed = uses_allowed
    registration_token.expiry_time = expiry_time
    registration_token.save(update_fields=["uses_allowed", "expiry_time"])


def delete_registration_tokens(*, tokens: list[str]) -> None:
    RegistrationToken.objects.filter(token__in=tokens).delete()
