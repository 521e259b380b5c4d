"""Admin site for accounts: users, their devices, registration tokens.

The admin is another client of ``accounts.actions`` (DESIGN 4.1, 4.8): deactivating, resetting a
password, logging devices out and renaming them all call the actions the client API calls, and the
admin never ``save()``s or ``delete()``s an accounts row itself. Nothing here can add or delete a
user: users register through the API or ``manage.py make_admin``, and user IDs are never reused
(deactivate instead). Access tokens are never shown (only their hashes exist anyway).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth import password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.actions import (
    create_registration_token,
    delete_registration_tokens,
    set_admin,
    update_device,
    update_registration_token,
)
from accounts.tokens import REGISTRATION_TOKEN_RE
from accounts.models import Device, RegistrationToken, User
from e2ee.actions import change_password, deactivate_user, delete_devices, logout  # + device-list changes
from matrixsrv.errors import MatrixError
from moderation.actions import redact_user_events, server_ban_user
from moderation.selectors import user_overview
from rooms.actions import set_profile

# -- Helpers --------------------------------------------------------------------------------------


def ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


# Django's groups and per-model permissions are unused: is_staff (= is_superuser) is "server admin".
if admin.site.is_registered(Group):
    admin.site.unregister(Group)


# -- Users ----------------------------------------------------------------------------------------


class DeviceInline(admin.TabularInline):
    """The user's devices, read-only. Logging one out goes through DeviceAdmin (accounts.actions)."""

    model = Device
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("device_id",)
    fields = ("device_id", "display_name", "last_seen", "last_seen_ip", "last_seen_user_agent", "log_out")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="last seen")
    def last_seen(self, device: Device) -> datetime | None:
        return ms_to_datetime(device.last_seen_ts)

    @admin.display(description="")
    def log_out(self, device: Device) -> str:
        if device.pk is None:
            return ""
        url = reverse("admin:accounts_device_logout", args=[device.pk])
        return format_html('<a class="deletelink" href="{}">Log out</a>', url)


class ResetPasswordForm(forms.Form):
    new_password1 = forms.CharField(
        label="New password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    new_password2 = forms.CharField(
        label="New password (again)",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    logout_devices = forms.BooleanField(
        label="Log out all devices",
        required=False,
        initial=True,
        help_text="Every access token of the user stops working.",
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        self.user = user
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        first, second = data.get("new_password1"), data.get("new_password2")
        if first and second:
            if first != second:
                raise ValidationError("The two passwords differ.")
            password_validation.validate_password(first, self.user)
        return data


class ModerationReasonForm(forms.Form):
    reason = forms.CharField(required=False, max_length=1000, help_text="Recorded in the audit log.")


SERVER_BAN_WARNING = (
    "The user leaves every room, the account is deactivated (every device logged out) and the user ID "
    "is never given out again. This cannot be undone."
)


def _readable_event(event: dict[str, Any]) -> dict[str, Any]:
    """A recent event of the user, as one line of the user page (client format in, display fields out)."""
    content = event.get("content") or {}
    if event.get("redacted"):
        body = "redacted"
    elif isinstance(content.get("body"), str):
        body = content["body"] if len(content["body"]) <= 200 else content["body"][:199] + "…"
    elif event.get("type") == "m.room.member":
        body = f"{event.get('state_key')} → {content.get('membership')}"
    else:
        body = ""
    return {
        "event_id": event.get("event_id"),
        "room_id": event.get("room_id"),
        "room_url": reverse("admin:rooms_room_change", args=[quote(event.get("room_id", ""))]),
        "type": event.get("type"),
        "time": ms_to_datetime(event.get("origin_server_ts")),
        "body": body,
        "redacted": bool(event.get("redacted")),
    }


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = (
        "mxid",
        "displayname",
        "is_active",
        "is_staff",
        "created_at",
        "deactivated_at",
        "device_count",
    )
    list_display_links = ("mxid",)
    list_filter = ("is_active", "is_staff")
    search_fields = ("mxid", "localpart", "displayname")
    ordering = ("localpart",)
    fieldsets = (
        (None, {"fields": ["mxid", "localpart", "displayname", "avatar_url"]}),
        (
            "Status",
            {
                "fields": [
                    "is_active",
                    "deactivated_at",
                    "is_staff",
                    "is_superuser",
                    "created_at",
                    "last_login",
                ]
            },
        ),
    )
    # Everything but the display name is read-only; the password never appears at all.
    readonly_fields = (
        "mxid",
        "localpart",
        "avatar_url",
        "is_active",
        "deactivated_at",
        "is_staff",
        "is_superuser",
        "created_at",
        "last_login",
    )
    inlines = (DeviceInline,)
    actions = ("deactivate_users", "server_ban_users", "reset_password", "make_server_admin",
               "revoke_server_admin")
    # The user page adds a moderation section: rooms, devices, recent events, ban and redact buttons.
    change_form_template = "admin/accounts/user/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).annotate(device_count=Count("devices"))

    @admin.display(description="devices", ordering="device_count")
    def device_count(self, user: User) -> int:
        return user.device_count  # type: ignore[attr-defined]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # users register through the API or `manage.py make_admin`

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # user IDs are never reused: deactivate instead

    def save_model(self, request: HttpRequest, obj: User, form: forms.ModelForm, change: bool) -> None:
        if "displayname" in form.changed_data:
            # The profile action: the new name is also announced in every room the user is joined to.
            set_profile(user=obj, displayname=form.cleaned_data["displayname"] or None)

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        # The device inline is read-only and is never saved: logging out goes through DeviceAdmin.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    # -- actions --

    def _active_others(self, request: HttpRequest, queryset: QuerySet[User], about_self: str) -> list[User]:
        """The selected active users but the admin acting (warned with ``about_self``); warns when
        that leaves nobody."""
        users = list(queryset.filter(is_active=True))
        if any(u.pk == request.user.pk for u in users):
            self.message_user(request, about_self, messages.WARNING)
            users = [u for u in users if u.pk != request.user.pk]
        if not users:
            self.message_user(request, "No active user selected.", messages.WARNING)
        return users

    @admin.action(description="Deactivate selected users", permissions=["change"])
    def deactivate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        users = self._active_others(request, queryset, "You cannot deactivate yourself here; skipped.")
        if not users:
            return None
        if request.POST.get("post") != "yes":
            return TemplateResponse(
                request,
                "admin/accounts/user/deactivate_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Deactivate users",
                    "subtitle": None,
                    "users": users,
                    "opts": self.opts,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                    "media": self.media,
                },
            )
        for user in users:
            deactivate_user(user=user)
            self.log_change(request, user, "Deactivated.")
        self.message_user(request, f"Deactivated {len(users)} user(s).", messages.SUCCESS)
        return None

    @admin.action(description="Reset password", permissions=["change"])
    def reset_password(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        users = list(queryset[:2])
        if len(users) != 1:
            self.message_user(request, "Select exactly one user to reset a password.", messages.ERROR)
            return None
        user = users[0]
        if not user.is_active:
            self.message_user(request, f"{user.mxid} is deactivated.", messages.ERROR)
            return None
        if "apply" in request.POST:
            form = ResetPasswordForm(request.POST, user=user)
            if form.is_valid():
                logout_devices = form.cleaned_data["logout_devices"]
                change_password(
                    user=user,
                    new_password=form.cleaned_data["new_password1"],
                    keep_device=None,
                    logout_devices=logout_devices,
                )
                done = "Password reset" + ("; all devices logged out." if logout_devices else ".")
                self.log_change(request, user, done)
                self.message_user(request, f"{user.mxid}: {done}", messages.SUCCESS)
                return None
        else:
            form = ResetPasswordForm(user=user)
        return TemplateResponse(
            request,
            "admin/accounts/user/reset_password.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Reset the password of {user.mxid}",
                "subtitle": None,
                "target": user,
                "form": form,
                "opts": self.opts,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "media": self.media + form.media,
            },
        )

    @admin.action(description="Make selected users server admins", permissions=["change"])
    def make_server_admin(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = [u for u in queryset if u.is_active and not (u.is_staff and u.is_superuser)]
        for user in users:
            set_admin(user=user, is_admin=True)
            self.log_change(request, user, "Made server admin.")
        self.message_user(request, f"{len(users)} user(s) made server admin.", messages.SUCCESS)

    @admin.action(description="Revoke server admin from selected users", permissions=["change"])
    def revoke_server_admin(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = [u for u in queryset if u.is_staff or u.is_superuser]
        if any(u.pk == request.user.pk for u in users):
            self.message_user(request, "You cannot revoke your own admin rights; skipped.", messages.WARNING)
            users = [u for u in users if u.pk != request.user.pk]
        for user in users:
            set_admin(user=user, is_admin=False)
            self.log_change(request, user, "Revoked server admin.")
        self.message_user(request, f"{len(users)} user(s) no longer server admin.", messages.SUCCESS)

    # -- moderation (moderation.actions; they write the audit log) --

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """The user page, plus the moderation section: rooms, devices, recent events (read-only)."""
        extra: dict[str, Any] = dict(extra_context or {})
        user = self.get_object(request, unquote(object_id))
        if user is not None:
            try:
                overview = user_overview(user.mxid)
            except MatrixError:
                overview = None
            if overview is not None:
                extra["moderation"] = {
                    **overview,
                    "rooms": [
                        {**room, "url": reverse("admin:rooms_room_change", args=[quote(room["room_id"])])}
                        for room in overview["rooms"]
                    ],
                    "devices": [
                        {**device, "last_seen": ms_to_datetime(device.get("last_seen_ts"))}
                        for device in overview["devices"]
                    ],
                    "recent_events": [_readable_event(event) for event in overview["recent_events"]],
                    "server_ban_url": reverse("admin:accounts_user_server_ban", args=[user.pk]),
                    "redact_events_url": reverse("admin:accounts_user_redact_events", args=[user.pk]),
                }
        return super().change_view(request, object_id, form_url, extra)

    def get_urls(self) -> list[Any]:
        return [
            path("<path:object_id>/server_ban/", self.admin_site.admin_view(self.server_ban_view),
                 name="accounts_user_server_ban"),
            path("<path:object_id>/redact_events/", self.admin_site.admin_view(self.redact_events_view),
                 name="accounts_user_redact_events"),
            *super().get_urls(),
        ]

    def _moderation_target(self, request: HttpRequest, object_id: str) -> User:
        user = self.get_object(request, unquote(object_id))
        if user is None:
            raise Http404("No such user")
        if not self.has_change_permission(request, user):
            raise PermissionDenied
        return user

    def _confirm(self, request: HttpRequest, *, title: str, warning: str, summary: list[tuple[str, Any]],
                 confirm_label: str, form: forms.Form, hidden: list[tuple[str, Any]], cancel_url: str,
                 ) -> HttpResponse:
        """The moderation confirmation page (moderation's template), with the reason to fill in."""
        return TemplateResponse(
            request,
            "admin/moderation/confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "subtitle": None,
                "warning": warning,
                "summary": summary,
                "confirm_label": confirm_label,
                "cancel_url": cancel_url,
                "form": form,
                "hidden": hidden,
                "opts": self.opts,
                "media": self.media,
            },
        )

    def server_ban_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Ban one user from the whole server (leave every room, deactivate), after a confirmation."""
        user = self._moderation_target(request, object_id)
        if user.pk == request.user.pk:
            self.message_user(request, "You cannot ban yourself.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:accounts_user_change", args=[user.pk]))

        def ban(reason: str) -> str:
            server_ban_user(actor=request.user, user_id=user.mxid, reason=reason)  # type: ignore[arg-type]
            return f"{user.mxid} is banned from the server."

        return self._confirmed_user_action(
            request, user, run=ban, failure="Server ban failed",
            title=f"Ban {user.mxid} from the server",
            warning=SERVER_BAN_WARNING,
            summary=[("User", user.mxid), ("Rooms", user.memberships.filter(membership="join").count())],
            confirm_label="Yes, ban from the server",
        )

    def redact_events_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Redact every event the user sent, in every room, after a confirmation."""
        user = self._moderation_target(request, object_id)

        def redact(reason: str) -> str:
            count = redact_user_events(actor=request.user, user_id=user.mxid, reason=reason)  # type: ignore[arg-type]
            return f"Redacted {count} event(s) of {user.mxid}."

        return self._confirmed_user_action(
            request, user, run=redact, failure="Redaction failed",
            title=f"Redact all events of {user.mxid}",
            warning="The content of every event this user sent, in every room, is removed for everyone, "
            "for good. Rooms where the server's moderator cannot get the power to redact are skipped.",
            summary=[("User", user.mxid)],
            confirm_label="Yes, redact everything",
        )

    def _confirmed_user_action(
        self, request: HttpRequest, user: User, *, run: Any, failure: str, title: str, warning: str,
        summary: list[tuple[str, Any]], confirm_label: str,
    ) -> HttpResponse:
        """A confirmation page with a reason; once confirmed, ``run(reason)`` (a moderation action; its
        return value is the success message, a MatrixError the failure's), then back to the user."""
        back = reverse("admin:accounts_user_change", args=[user.pk])
        form = ModerationReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and request.POST.get("confirm") == "yes" and form.is_valid():
            try:
                done = run(form.cleaned_data["reason"])
            except MatrixError as error:
                self.message_user(request, f"{failure}: {error.message} ({error.errcode})", messages.ERROR)
            else:
                self.message_user(request, done, messages.SUCCESS)
            return HttpResponseRedirect(back)
        return self._confirm(
            request, title=title, warning=warning, summary=summary, confirm_label=confirm_label,
            form=form, hidden=[], cancel_url=back,
        )

    @admin.action(description="Ban selected users from the server", permissions=["change"])
    def server_ban_users(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        users = self._active_others(request, queryset, "You cannot ban yourself; skipped.")
        if not users:
            return None
        form = ModerationReasonForm(request.POST if request.POST.get("confirm") == "yes" else None)
        if not form.is_valid():
            return self._confirm(
                request,
                title="Ban users from the server",
                warning=SERVER_BAN_WARNING,
                summary=[("User", u.mxid) for u in users],
                confirm_label="Yes, ban from the server",
                form=form,
                hidden=[("action", "server_ban_users"), ("index", "0"),
                        *((helpers.ACTION_CHECKBOX_NAME, u.pk) for u in users)],
                cancel_url=reverse("admin:accounts_user_changelist"),
            )
        banned, failed = 0, []
        for user in users:
            try:
                server_ban_user(actor=request.user, user_id=user.mxid,  # type: ignore[arg-type]
                                reason=form.cleaned_data["reason"])
            except MatrixError as error:
                failed.append(f"{user.mxid}: {error.message} ({error.errcode})")
            else:
                banned += 1
        self.message_user(request, f"Banned {banned} user(s) from the server.", messages.SUCCESS)
        for failure in failed:
            self.message_user(request, f"Server ban failed: {failure}", messages.ERROR)
        return None


# -- Devices --------------------------------------------------------------------------------------


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = (
        "device_id",
        "owner",
        "display_name",
        "last_seen",
        "last_seen_ip",
        "user_agent",
        "created_at",
    )
    list_select_related = ("user",)
    search_fields = ("device_id", "display_name", "user__mxid", "user__localpart", "last_seen_ip")
    list_filter = ("user__is_active",)
    ordering = ("user__localpart", "device_id")
    fields = (
        "owner",
        "device_id",
        "display_name",
        "created_at",
        "last_seen",
        "last_seen_ip",
        "last_seen_user_agent",
    )
    readonly_fields = tuple(f for f in fields if f != "display_name")
    actions = ("log_out_devices",)

    @admin.display(description="user", ordering="user__localpart")
    def owner(self, device: Device) -> str:
        url = reverse("admin:accounts_user_change", args=[device.user_id])
        return format_html('<a href="{}">{}</a>', url, device.user.mxid)

    @admin.display(description="last seen", ordering="last_seen_ts")
    def last_seen(self, device: Device) -> datetime | None:
        return ms_to_datetime(device.last_seen_ts)

    @admin.display(description="user agent")
    def user_agent(self, device: Device) -> str | None:
        ua = device.last_seen_user_agent
        return ua if ua is None or len(ua) <= 60 else ua[:59] + "…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # devices are made by logging in

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # "Log out" (accounts.actions) instead of a raw delete

    def save_model(self, request: HttpRequest, obj: Device, form: forms.ModelForm, change: bool) -> None:
        if "display_name" in form.changed_data:
            update_device(device=obj, display_name=form.cleaned_data["display_name"] or None)

    @admin.action(description="Log out selected devices", permissions=["change"])
    def log_out_devices(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        by_user: dict[int, tuple[User, list[str]]] = {}
        for device in queryset.select_related("user"):
            by_user.setdefault(device.user_id, (device.user, []))[1].append(device.device_id)
        with transaction.atomic():
            for user, device_ids in by_user.values():
                delete_devices(user=user, device_ids=device_ids)
                self.log_change(request, user, f"Logged out devices: {', '.join(sorted(device_ids))}.")
        count = sum(len(ids) for _, ids in by_user.values())
        self.message_user(request, f"Logged out {count} device(s).", messages.SUCCESS)

    # A per-device "Log out" page, linked from each row of the user's device list.
    def get_urls(self) -> list[Any]:
        return [
            path(
                "<path:object_id>/logout/",
                self.admin_site.admin_view(self.logout_view),
                name="accounts_device_logout",
            ),
            *super().get_urls(),
        ]

    def logout_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        device = self.get_object(request, object_id)
        if device is None:
            raise Http404("No such device")
        if not self.has_change_permission(request, device):
            raise PermissionDenied
        user_url = reverse("admin:accounts_user_change", args=[device.user_id])
        if request.method == "POST":
            user, device_id = device.user, device.device_id
            logout(device=device)
            self.log_change(request, user, f"Logged out device {device_id}.")
            self.message_user(request, f"Logged out device {device_id} of {user.mxid}.", messages.SUCCESS)
            return HttpResponseRedirect(user_url)
        return TemplateResponse(
            request,
            "admin/accounts/device/logout_confirmation.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Log out device {device.device_id}",
                "subtitle": None,
                "device": device,
                "last_seen": ms_to_datetime(device.last_seen_ts),
                "user_url": user_url,
                "opts": self.opts,
                "media": self.media,
            },
        )


# -- Registration tokens --------------------------------------------------------------------------


class RegistrationTokenForm(forms.ModelForm):
    token = forms.CharField(
        required=False,
        max_length=64,
        help_text="Leave empty for a random token. Allowed characters: A-Z a-z 0-9 . _ ~ -",
    )

    class Meta:
        model = RegistrationToken
        fields = ("token", "uses_allowed", "expiry_time")

    def clean_token(self) -> str:
        token = self.cleaned_data["token"].strip()
        if token and not REGISTRATION_TOKEN_RE.match(token):
            raise ValidationError("Use 1 to 64 of the characters A-Z a-z 0-9 . _ ~ -")
        return token


@admin.register(RegistrationToken)
class RegistrationTokenAdmin(admin.ModelAdmin):
    form = RegistrationTokenForm
    list_display = ("token", "uses_allowed", "completed", "expiry_time", "usable", "created_at")
    search_fields = ("token",)
    ordering = ("-created_at",)

    def get_fields(self, request: HttpRequest, obj: RegistrationToken | None = None) -> list[str]:
        if obj is None:
            return ["token", "uses_allowed", "expiry_time"]
        return ["token", "uses_allowed", "expiry_time", "completed", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: RegistrationToken | None = None) -> list[str]:
        return [] if obj is None else ["token", "completed", "created_at"]

    @admin.display(boolean=True)
    def usable(self, token: RegistrationToken) -> bool:
        return token.is_usable()

    def save_model(
        self, request: HttpRequest, obj: RegistrationToken, form: forms.ModelForm, change: bool
    ) -> None:
        data = form.cleaned_data
        if change:
            update_registration_token(
                registration_token=obj, uses_allowed=data["uses_allowed"], expiry_time=data["expiry_time"]
            )
            return
        created = create_registration_token(
            token=data["token"] or None, uses_allowed=data["uses_allowed"], expiry_time=data["expiry_time"]
        )
        # The admin goes on with ``obj`` (log entry, redirect): make it the row just created.
        for field in obj._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding, obj._state.db = False, created._state.db

    def delete_model(self, request: HttpRequest, obj: RegistrationToken) -> None:
        delete_registration_tokens(tokens=[obj.token])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RegistrationToken]) -> None:
        delete_registration_tokens(tokens=list(queryset.values_list("token", flat=True)))
