"""Presence rows, read-only: they change only through presence.actions (stream position + wake-up)."""

from django.contrib import admin

from presence.models import Presence


@admin.register(Presence)
class PresenceAdmin(admin.ModelAdmin):
    list_display = ("mxid", "shown_state", "shown_active", "status_msg", "last_active_ms", "stream_pos")
    search_fields = ("mxid",)

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
