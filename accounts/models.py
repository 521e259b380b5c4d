"""Accounts: users, their devices and access tokens, user-interactive-auth sessions, registration tokens."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.utils import timezone


def make_mxid(localpart: str) -> str:
    return f"@{localpart}:{settings.MATRIX['SERVER_NAME']}"


class UserManager(BaseUserManager["User"]):
    """Used by Django's own commands (createsuperuser); the API registers through accounts.actions."""

    def create_user(self, localpart: str, password: str | None = None, **extra: object) -> "User":
        user = self.model(localpart=localpart, mxid=make_mxid(localpart), **extra)
        user.set_password(password) if password else user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, localpart: str, password: str | None = None, **extra: object) -> "User":
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(localpart, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A local Matrix user. ``is_active`` is False once the account is deactivated.

    The Matrix user ID ("@alice:example.org") is ``mxid``, not ``user_id``: Django names every foreign
    key's column ``<name>_id``, so ``device.user_id`` is the owner's primary key and must not be
    confused with a Matrix ID.
    """

    localpart = models.CharField(max_length=255, unique=True)
    mxid = models.CharField("Matrix user ID", max_length=255, unique=True)
    displayname = models.TextField(null=True, blank=True)
    avatar_url = models.TextField(null=True, blank=True)
    is_active = models.BooleanField(default=True, help_text="False once the account is deactivated.")
    is_staff = models.BooleanField(default=False, help_text="May log into the admin site.")
    created_at = models.DateTimeField(default=timezone.now)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "localpart"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["localpart"]

    def __str__(self) -> str:
        return self.mxid


class Device(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="devices")
    device_id = models.CharField(max_length=255)
    display_name = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_ts = models.BigIntegerField(null=True, blank=True, help_text="Milliseconds since the epoch.")
    last_seen_ip = models.CharField(max_length=64, null=True, blank=True)
    last_seen_user_agent = models.TextField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "device_id"], name="device_unique_per_user")]

    def __str__(self) -> str:
        return self.device_id


class AccessToken(models.Model):
    """An access token, stored only as its SHA-256: a database leak gives no usable token."""

    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="access_tokens")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="access_tokens")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"token for {self.device}"


class UIASession(models.Model):
    """User-interactive auth in progress. In the database so any worker can continue it."""

    session_id = models.CharField(max_length=64, unique=True)
    # Bound to a user for flows that re-authenticate a logged-in user; null for registration.
    user = models.ForeignKey(User, on_delete=models.CASCADE, null=True, blank=True)
    completed = models.JSONField(default=list)
    results = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)


class RegistrationToken(models.Model):
    """A token that lets someone register while MATRIX_REGISTRATION=token (spec: m.login.registration_token)."""

    token = models.CharField(max_length=64, unique=True)
    uses_allowed = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: unlimited.")
    completed = models.PositiveIntegerField(default=0)
    expiry_time = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.token

    def is_usable(self) -> bool:
        if self.expiry_time is not None and self.expiry_time <= timezone.now():
            return False
        return self.uses_allowed is None or self.completed < self.uses_allowed


class AccountData(models.Model):
    """One piece of a user's account data: global (``room_id`` NULL) or for one room. Room tags are
    room account data of type ``m.tag``. Synced: ``stream_pos`` comes from the one stream counter
    (events/stream.py) and is renewed on every write, so /sync sends rows changed after ``since``."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="account_data")
    room_id = models.CharField(max_length=255, null=True, blank=True)
    type = models.CharField(max_length=255)
    content = models.JSONField(default=dict)
    stream_pos = models.BigIntegerField()
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # NULLs are distinct in a unique index: the global rows need their own constraint.
            models.UniqueConstraint(
                fields=["user", "type"],
                condition=models.Q(room_id__isnull=True),
                name="account_data_global_unique",
            ),
            models.UniqueConstraint(
                fields=["user", "room_id", "type"],
                condition=models.Q(room_id__isnull=False),
                name="account_data_room_unique",
            ),
        ]
        indexes = [models.Index(fields=["user", "stream_pos"], name="account_data_user_pos")]

    def __str__(self) -> str:
        return f"{self.type} ({self.room_id or 'global'})"
