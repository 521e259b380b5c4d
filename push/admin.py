"""Admin site for push: read-only listings of pushers, users' push-rule state and notifications.

Changes go through the client API (``push.actions``), so the admin neither adds, changes nor
deletes rows here.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from push.models import PushAction, Pusher, PushRuleState


class _ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Pusher)
class PusherAdmin(_ReadOnlyAdmin):
    list_display = ("user", "kind", "app_id", "app_display_name", "device_display_name", "created_at")
    list_filter = ("kind",)
    search_fields = ("user__mxid", "app_id", "pushkey")
    list_select_related = ("user",)


@admin.register(PushRuleState)
class PushRuleStateAdmin(_ReadOnlyAdmin):
    list_display = ("user", "updated_at")
    search_fields = ("user__mxid",)
    list_select_related = ("user",)


@admin.register(PushAction)
class PushActionAdmin(_ReadOnlyAdmin):
    """Notifications are made by the events that cause them (push.actions.plan_push_actions)."""

    list_display = ("user", "room", "stream_pos", "thread_id", "highlight", "ts")
    list_filter = ("highlight",)
    search_fields = ("user__mxid", "room__room_id")
    list_select_related = ("user",)
    raw_id_fields = ("user", "room", "event")
