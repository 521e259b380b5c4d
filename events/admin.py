"""Events in the admin: a read-only, searchable list and page per event.

Events are the rooms' history and are appended only by ``events.actions.append_event``; nobody adds,
edits or deletes one here (DESIGN 4.1). Removing content is a redaction, which is a new event: the
"Redact" buttons are on the room's moderation page (moderation/admin.py → moderation.actions).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from events.models import Event


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("stream_pos", "event_id", "room_link", "type", "state_key", "sender", "sent_at",
                    "redacted")
    list_display_links = ("stream_pos", "event_id")
    search_fields = ("=event_id", "=room__room_id", "=sender", "=type")
    search_help_text = "Exact event ID, room ID, sender or event type."
    ordering = ("-stream_pos",)
    actions = None  # no bulk delete
    # The events table is the largest one: no COUNT(*) over all of it on every list page.
    show_full_result_count = False
    fields = ("event_id", "room_link", "stream_pos", "type", "state_key", "sender", "sent_at", "content_json",
              "unsigned_json", "depth", "prev_events", "auth_events", "redacts", "txn_id")
    readonly_fields = fields

    @admin.display(description="room")
    def room_link(self, event: Event) -> str:
        url = reverse("admin:rooms_room_change", args=[quote(event.room_id)])
        return format_html('<a href="{}">{}</a>', url, event.room_id)

    @admin.display(description="sent", ordering="origin_server_ts")
    def sent_at(self, event: Event) -> datetime:
        return datetime.fromtimestamp(event.origin_server_ts / 1000, tz=UTC)

    @admin.display(boolean=True)
    def redacted(self, event: Event) -> bool:
        return event.redacted_because is not None

    @admin.display(description="content")
    def content_json(self, event: Event) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.content, indent=2, ensure_ascii=False))

    @admin.display(description="unsigned")
    def unsigned_json(self, event: Event) -> str:
        unsigned = {
            k: v
            for k, v in (
                ("prev_content", event.prev_content),
                ("prev_sender", event.prev_sender),
                ("replaces_state", event.replaces_state),
                ("redacted_because", event.redacted_because),
            )
            if v is not None
        }
        return format_html("<pre>{}</pre>", json.dumps(unsigned, indent=2, ensure_ascii=False))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # redact through the room page instead

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
