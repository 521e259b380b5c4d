"""Memberships in the admin: a read-only list (who is in which room, and how).

Membership rows are the materialized result of ``m.room.member`` events (events.actions writes
them), so nothing here adds, edits or deletes one: kick, ban and unban are on the room's moderation
page (moderation/admin.py), which calls moderation.actions and so sends real Matrix events.
The ``Room`` admin itself lives in moderation/admin.py, beside the moderation templates.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from rooms.models import Membership


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("mxid", "room_link", "membership", "displayname", "stream_pos")
    list_filter = ("membership",)
    list_select_related = ("room",)
    search_fields = ("mxid", "room__room_id", "room__name", "room__canonical_alias")
    ordering = ("-stream_pos",)
    actions = None  # no bulk delete
    fields = ("room", "mxid", "user", "membership", "displayname", "avatar_url", "forgotten", "event",
              "stream_pos")
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="room", ordering="room__name")
    def room_link(self, membership: Membership) -> str:
        url = reverse("admin:rooms_room_change", args=[quote(membership.room_id)])
        return format_html('<a href="{}">{}</a>', url, membership.room)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # membership changes are m.room.member events: use the room page

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
