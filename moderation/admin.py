"""Moderation in the Django admin: rooms, the reports inbox and the audit log.

The admin is one more client of ``moderation.actions`` (DESIGN 4.1 principle 2): every button on
these pages is a POST (CSRF-protected by ``admin_site.admin_view``) that calls one action, which
sends proper Matrix events through the one events write path and writes the audit log entry. This
module holds no moderation logic of its own: it parses forms, asks for a confirmation before the
destructive ones, calls the action and turns a ``MatrixError`` into an error message (its text,
never a 500). Reads go through ``moderation.selectors``.

Nothing here adds, edits or deletes a room, a report or an audit log entry as a row: rooms change
only through events, reports only through ``set_report_state``, and the audit log is append-only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.models import User
from events.models import Event
from matrixsrv.errors import MatrixError
from moderation import actions as moderation
from moderation.models import AuditLogEntry, Report
from moderation.selectors import (
    report_context,
    room_current_state,
    room_members,
    room_overview,
    room_timeline,
)
from rooms.models import Room

TIMELINE_PAGE = 50
BODY_PREVIEW = 300


# -- Helpers shared with the other admin modules --------------------------------------------------


def ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def datetime_to_ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def is_redacted(event: dict[str, Any]) -> bool:
    """A client-format event that was redacted (the selectors mark it; unsigned.redacted_because too)."""
    unsigned = event.get("unsigned") or {}
    return bool(event.get("redacted") or unsigned.get("redacted_because"))


def _short(text: str, limit: int = BODY_PREVIEW) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_event(event: dict[str, Any]) -> str:
    """One readable line for a moderator: the message body, or what a state event changed."""
    content = event.get("content") or {}
    etype = event.get("type", "")
    if is_redacted(event):
        return "redacted"
    if etype == "m.room.message" or etype == "m.sticker":
        body = content.get("body")
        return _short(body if isinstance(body, str) else json.dumps(content, ensure_ascii=False))
    if etype == "m.room.member":
        line = f"{event.get('state_key')} → {content.get('membership')}"
        if content.get("reason"):
            line += f" (reason: {content['reason']})"
        return line
    if etype == "m.room.name":
        return f"name: {content.get('name', '')}"
    if etype == "m.room.topic":
        return f"topic: {content.get('topic', '')}"
    if etype == "m.room.redaction":
        target = event.get("redacts") or content.get("redacts")
        return f"redacts {target}" + (f" (reason: {content['reason']})" if content.get("reason") else "")
    return _short(json.dumps(content, ensure_ascii=False, sort_keys=True))


def readable_event(event: dict[str, Any]) -> dict[str, Any]:
    """The fields a timeline row shows, from a client-format event."""
    return {
        "event_id": event.get("event_id"),
        "sender": event.get("sender"),
        "type": event.get("type"),
        "state_key": event.get("state_key"),
        "time": ms_to_datetime(event.get("origin_server_ts")),
        "body": describe_event(event),
        "redacted": is_redacted(event),
        "can_redact": not is_redacted(event) and event.get("type") not in ("m.room.create",),
        "json": json.dumps(event, indent=2, ensure_ascii=False, sort_keys=True),
    }


def matrix_error_text(error: MatrixError) -> str:
    return f"{error.message} ({error.errcode})"


# -- Moderation operations: one form and one action call each -------------------------------------


class ReasonForm(forms.Form):
    reason = forms.CharField(required=False, max_length=1000)


class MemberForm(ReasonForm):
    user_id = forms.CharField(max_length=255, label="User ID")


class RedactEventForm(ReasonForm):
    event_id = forms.CharField(max_length=255, label="Event ID")


class RedactUserEventsForm(ReasonForm):
    user_id = forms.CharField(max_length=255, label="User ID")
    since = forms.DateTimeField(required=False, help_text="Only events sent at or after (UTC).")
    until = forms.DateTimeField(required=False, help_text="Only events sent before (UTC).")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            raise forms.ValidationError("The start of the time window must be before its end.")
        return data


class RoomNameForm(ReasonForm):
    name = forms.CharField(required=False, max_length=255, strip=True)


class RoomTopicForm(ReasonForm):
    topic = forms.CharField(required=False, max_length=4000, widget=forms.Textarea)


class PowerLevelForm(MemberForm):
    level = forms.IntegerField(min_value=-(2**53) + 1, max_value=2**53 - 1)


class ShutdownForm(forms.Form):
    reason = forms.CharField(max_length=1000)
    notice_room_name = forms.CharField(
        required=False, max_length=255, help_text="Leave empty to create no notice room."
    )
    notice_message = forms.CharField(required=False, max_length=4000, widget=forms.Textarea)


@dataclass(frozen=True)
class RoomOperation:
    """A button on the room page: its form, whether it needs a confirmation, and the action call."""

    label: str
    form: type[forms.Form]
    destructive: bool
    run: Callable[[User, str, dict[str, Any]], str]  # (actor, room_id, cleaned data) -> success text


def _kick(actor: User, room_id: str, data: dict[str, Any]) -> str:
    moderation.kick_member(actor=actor, room_id=room_id, user_id=data["user_id"], reason=data["reason"])
    return f"Kicked {data['user_id']}."


def _ban(actor: User, room_id: str, data: dict[str, Any]) -> str:
    moderation.ban_member(actor=actor, room_id=room_id, user_id=data["user_id"], reason=data["reason"])
    return f"Banned {data['user_id']}."


def _unban(actor: User, room_id: str, data: dict[str, Any]) -> str:
    moderation.unban_member(actor=actor, room_id=room_id, user_id=data["user_id"], reason=data["reason"])
    return f"Unbanned {data['user_id']}."


def _redact(actor: User, room_id: str, data: dict[str, Any]) -> str:
    moderation.redact_event(actor=actor, room_id=room_id, event_id=data["event_id"], reason=data["reason"])
    return f"Redacted {data['event_id']}."


def _redact_user_events(actor: User, room_id: str, data: dict[str, Any]) -> str:
    count = moderation.redact_user_events(
        actor=actor,
        user_id=data["user_id"],
        room_id=room_id,
        since_ms=datetime_to_ms(data.get("since")),
        until_ms=datetime_to_ms(data.get("until")),
        reason=data["reason"],
    )
    return f"Redacted {count} event(s) of {data['user_id']} in this room."


def _set_name(actor: User, room_id: str, data: dict[str, Any]) -> str:
    moderation.set_room_name(actor=actor, room_id=room_id, name=data["name"], reason=data["reason"])
    return "Room name set." if data["name"] else "Room name removed."


def _set_topic(actor: User, room_id: str, data: dict[str, Any]) -> str:
    moderation.set_room_topic(actor=actor, room_id=room_id, topic=data["topic"], reason=data["reason"])
    return "Room topic set." if data["topic"] else "Room topic removed."


def _set_power(actor: User, room_id: str, data: dict[str, Any]) -> str:
    moderation.set_user_power_level(
        actor=actor, room_id=room_id, user_id=data["user_id"], level=data["level"], reason=data["reason"]
    )
    return f"Power level of {data['user_id']} set to {data['level']}."


def _remove_from_directory(actor: User, room_id: str, data: dict[str, Any]) -> str:
    moderation.remove_from_directory(actor=actor, room_id=room_id, reason=data["reason"])
    return "Removed from the room directory."


def _block(actor: User, room_id: str, data: dict[str, Any]) -> str:
    moderation.block_room(actor=actor, room_id=room_id, reason=data["reason"])
    return "Room blocked: nobody can join or send."


def _unblock(actor: User, room_id: str, data: dict[str, Any]) -> str:
    moderation.unblock_room(actor=actor, room_id=room_id, reason=data["reason"])
    return "Room unblocked."


def _shutdown(actor: User, room_id: str, data: dict[str, Any]) -> str:
    notice_room = moderation.shutdown_room(
        actor=actor,
        room_id=room_id,
        reason=data["reason"],
        notice_room_name=data.get("notice_room_name") or None,
        notice_message=data.get("notice_message") or None,
    )
    done = "Room shut down: local members kicked, aliases removed, room blocked."
    return done + (f" Notice room: {notice_room}." if notice_room else "")


ROOM_OPERATIONS: dict[str, RoomOperation] = {
    "kick": RoomOperation("Kick", MemberForm, True, _kick),
    "ban": RoomOperation("Ban", MemberForm, True, _ban),
    "unban": RoomOperation("Unban", MemberForm, False, _unban),
    "redact_event": RoomOperation("Redact event", RedactEventForm, True, _redact),
    "redact_user_events": RoomOperation("Redact all events of a user", RedactUserEventsForm, True,
                                        _redact_user_events),
    "set_name": RoomOperation("Set name", RoomNameForm, False, _set_name),
    "set_topic": RoomOperation("Set topic", RoomTopicForm, False, _set_topic),
    "set_power_level": RoomOperation("Set power level", PowerLevelForm, False, _set_power),
    "remove_from_directory": RoomOperation("Remove from the directory", ReasonForm, True,
                                           _remove_from_directory),
    "block": RoomOperation("Block room", ReasonForm, True, _block),
    "unblock": RoomOperation("Unblock room", ReasonForm, False, _unblock),
    "shutdown": RoomOperation("Shut down room", ShutdownForm, True, _shutdown),
}


def confirmation_page(
    admin_obj: admin.ModelAdmin,
    request: HttpRequest,
    *,
    title: str,
    summary: list[tuple[str, Any]],
    warning: str,
    confirm_label: str,
    cancel_url: str,
    form: forms.Form | None = None,
    hidden: dict[str, Any] | None = None,
) -> TemplateResponse:
    """The "Are you sure?" page of a destructive operation: re-posts the same fields plus confirm=yes.

    ``form`` (if given) is shown editable (e.g. the reason of a server ban); ``hidden`` are posted back
    unchanged.
    """
    return TemplateResponse(
        request,
        "admin/moderation/confirm.html",
        {
            **admin_obj.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "summary": summary,
            "warning": warning,
            "confirm_label": confirm_label,
            "cancel_url": cancel_url,
            "form": form,
            "hidden": [(k, v) for k, v in (hidden or {}).items() if v not in (None, "")],
            "opts": admin_obj.opts,
            "media": admin_obj.media,
        },
    )


def posted_fields(request: HttpRequest) -> dict[str, str]:
    """The POST body as it came, less the CSRF token and the confirmation flag (to post it back)."""
    return {k: v for k, v in request.POST.items() if k not in ("csrfmiddlewaretoken", "confirm")}


def form_errors_text(form: forms.Form) -> str:
    parts = []
    for field, errors in form.errors.items():
        label = "" if field == "__all__" else f"{form.fields[field].label or field}: "
        parts.append(label + " ".join(str(e) for e in errors))
    return "; ".join(parts)


# -- Rooms ----------------------------------------------------------------------------------------


class RoomAdmin(admin.ModelAdmin):
    """Rooms: a searchable list and a moderation page per room (read-only; buttons call actions)."""

    list_display = (
        "room_id",
        "name",
        "canonical_alias",
        "version",
        "creator",
        "joined_count",
        "invited_count",
        "event_count",
        "last_activity",
        "is_public",
        "blocked",
    )
    list_display_links = ("room_id", "name")
    list_filter = ("version", "is_public", "blocked")
    search_fields = ("room_id", "name", "canonical_alias", "aliases__alias")
    ordering = ("-last_stream_pos",)
    actions = None  # no bulk operations (and no bulk delete)
    change_form_template = "admin/moderation/room/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Room]:
        events = Event.objects.filter(room_id=OuterRef("pk"))
        # Correlated subqueries, evaluated only for the page of rooms shown (index on room, stream_pos).
        return (
            super()
            .get_queryset(request)
            .annotate(
                event_count=Coalesce(
                    Subquery(
                        events.order_by().values("room_id").annotate(n=Count("pk")).values("n")[:1],
                        output_field=IntegerField(),
                    ),
                    0,
                ),
                last_activity_ts=Subquery(
                    Event.objects.filter(event_id=OuterRef("last_event_id")).values("origin_server_ts")[:1]
                ),
            )
        )

    @admin.display(description="events", ordering="event_count")
    def event_count(self, room: Room) -> int:
        return room.event_count  # type: ignore[attr-defined]

    @admin.display(description="last activity", ordering="last_stream_pos")
    def last_activity(self, room: Room) -> datetime | None:
        return ms_to_datetime(room.last_activity_ts)  # type: ignore[attr-defined]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rooms are created by users through the client API

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # shut a room down instead: its history stays for the record

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<path:object_id>/moderate/",
                self.admin_site.admin_view(self.moderate_view),
                name="rooms_room_moderate",
            ),
            *super().get_urls(),
        ]

    def _room(self, request: HttpRequest, object_id: str) -> Room:
        room = self.get_object(request, unquote(object_id))
        if room is None:
            raise Http404("No such room")
        return room

    def room_url(self, room: Room) -> str:
        return reverse("admin:rooms_room_change", args=[quote(room.pk)])

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """The room page: overview, moderation forms, members, current state and timeline."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])  # nothing is edited here: the forms post to moderate/
        room = self._room(request, object_id)
        if not self.has_view_or_change_permission(request, room):
            raise PermissionDenied
        before_raw = request.GET.get("before")
        try:
            before = int(before_raw) if before_raw else None
        except ValueError:
            before = None
        page = room_timeline(room.room_id, before_pos=before, limit=TIMELINE_PAGE + 1)
        has_older = len(page) > TIMELINE_PAGE
        page = page[:TIMELINE_PAGE]
        # The selector gives each entry its stream position: the oldest shown is the next page's bound.
        older_pos = page[-1]["stream_pos"] if has_older and page else None
        members = room_members(room.room_id)
        overview = room_overview(room.room_id)
        state = [
            {**readable_event(event),
             "content": json.dumps(event.get("content"), indent=2, ensure_ascii=False)}
            for event in room_current_state(room.room_id)
        ]
        can_moderate = self.has_change_permission(request, room)
        return TemplateResponse(
            request,
            self.change_form_template,
            {
                **self.admin_site.each_context(request),
                "title": f"Room {overview.get('name') or room.room_id}",
                "subtitle": room.room_id,
                "opts": self.opts,
                "original": room,
                "room": room,
                "overview": overview,
                "overview_rows": self._overview_rows(overview),
                "members": members,
                "state": state,
                "timeline": [readable_event(event) for event in page],
                "older_url": f"?before={older_pos}" if older_pos is not None else None,
                "is_first_page": before is None,
                "moderate_url": reverse("admin:rooms_room_moderate", args=[quote(room.pk)]),
                "can_moderate": can_moderate,
                "has_view_permission": True,
                "media": self.media,
                **(extra_context or {}),
            },
        )

    @staticmethod
    def _overview_rows(overview: dict[str, Any]) -> list[tuple[str, Any]]:
        aliases = overview.get("aliases")
        rows: list[tuple[str, Any]] = [
            ("Room ID", overview.get("room_id")),
            ("Name", overview.get("name")),
            ("Topic", overview.get("topic")),
            ("Canonical alias", overview.get("canonical_alias")),
            ("Aliases", ", ".join(aliases) if isinstance(aliases, list | tuple) else aliases),
            ("Version", overview.get("version")),
            ("Creator", overview.get("creator")),
            ("Joined members", overview.get("joined_count")),
            ("Invited", overview.get("invited_count")),
            ("Events", overview.get("event_count")),
            ("Last activity", ms_to_datetime(overview.get("last_activity_ts"))),
            ("In the directory", overview.get("public")),
            ("Blocked", overview.get("blocked")),
        ]
        if overview.get("blocked_reason"):
            rows.append(("Blocked because", overview["blocked_reason"]))
        return rows

    def moderate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST one operation (``op``) for this room; destructive ones first show a confirmation."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        room = self._room(request, object_id)
        if not self.has_change_permission(request, room):
            raise PermissionDenied
        back = self.room_url(room)
        op_name = request.POST.get("op", "")
        operation = ROOM_OPERATIONS.get(op_name)
        if operation is None:
            self.message_user(request, f"Unknown operation {op_name!r}.", messages.ERROR)
            return HttpResponseRedirect(back)
        form = operation.form(request.POST)
        if not form.is_valid():
            self.message_user(request, f"{operation.label}: {form_errors_text(form)}", messages.ERROR)
            return HttpResponseRedirect(back)
        data = form.cleaned_data
        if operation.destructive and request.POST.get("confirm") != "yes":
            return confirmation_page(
                self,
                request,
                title=f"{operation.label}: {room}",
                summary=[
                    ("Room", room.room_id),
                    *((form.fields[k].label or k.replace("_", " ").capitalize(), v)
                      for k, v in data.items() if v not in (None, "")),
                ],
                warning=self._warning(op_name),
                confirm_label=f"Yes, {operation.label.lower()}",
                cancel_url=back,
                hidden=posted_fields(request),
            )
        try:
            done = operation.run(request.user, room.room_id, data)  # type: ignore[arg-type]
        except MatrixError as error:
            self.message_user(request, f"{operation.label} failed: {matrix_error_text(error)}",
                              messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(back)

    @staticmethod
    def _warning(op_name: str) -> str:
        return {
            "kick": "The user leaves the room now; they can join again if the join rules allow it.",
            "ban": "The user leaves the room and cannot join again until unbanned.",
            "redact_event": "The event's content is removed for everyone, for good.",
            "redact_user_events": "The content of every matching event is removed for everyone, for good.",
            "remove_from_directory": "The room is no longer listed in the public room directory.",
            "block": "Nobody can join the room or send to it until it is unblocked.",
            "shutdown": "Every local member is kicked, the aliases are removed and the room is blocked.",
        }.get(op_name, "")


admin.site.register(Room, RoomAdmin)


# -- Reports --------------------------------------------------------------------------------------


class ReportStateForm(forms.Form):
    state = forms.ChoiceField(choices=())
    note = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["state"].choices = [(s, s.replace("_", " ")) for s in report_states()]


def report_states() -> list[str]:
    states = getattr(Report, "STATES", None)
    if not states:
        return ["open", "in_progress", "resolved", "dismissed"]
    return [s[0] if isinstance(s, tuple | list) else s for s in states]


REPORT_OPERATIONS = {
    "redact_event": "Redact the event",
    "kick": "Kick the user",
    "ban": "Ban the user",
    "block": "Block the room",
}


class ReportAdmin(admin.ModelAdmin):
    """The reports inbox: newest first, filtered by state; a page per report with its context."""

    list_display = ("created_at", "state", "kind", "reporter_mxid", "room_id", "target", "short_reason",
                    "score", "handled_by")
    list_display_links = ("created_at", "short_reason")
    list_filter = ("state", "kind")
    list_select_related = ("reporter", "handled_by")
    search_fields = ("room_id", "event_id", "target_user_id", "reason", "reporter__mxid")
    ordering = ("-created_at",)
    actions = None
    change_form_template = "admin/moderation/report/change_form.html"

    @admin.display(description="reporter", ordering="reporter__localpart")
    def reporter_mxid(self, report: Report) -> str:
        return report.reporter.mxid if report.reporter_id else ""

    @admin.display(description="target")
    def target(self, report: Report) -> str:
        return report.event_id or report.target_user_id or ""

    @admin.display(description="reason")
    def short_reason(self, report: Report) -> str:
        return _short(report.reason or "—", 80)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # users file reports through the client API

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # dismiss instead: reports stay for the record

    def get_urls(self) -> list[Any]:
        return [
            path("<path:object_id>/state/", self.admin_site.admin_view(self.state_view),
                 name="moderation_report_state"),
            path("<path:object_id>/act/", self.admin_site.admin_view(self.act_view),
                 name="moderation_report_act"),
            *super().get_urls(),
        ]

    def _report(self, request: HttpRequest, object_id: str) -> Report:
        report = self.get_object(request, unquote(object_id))
        if report is None:
            raise Http404("No such report")
        return report

    def report_url(self, report: Report) -> str:
        return reverse("admin:moderation_report_change", args=[report.pk])

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        report = self._report(request, object_id)
        if not self.has_view_or_change_permission(request, report):
            raise PermissionDenied
        try:
            context = report_context(report)
        except MatrixError as error:  # the room or event may be gone
            context = {}
            self.message_user(request, f"No context: {matrix_error_text(error)}", messages.WARNING)
        event = context.get("event")
        around = [
            {**readable_event(e), "is_reported": e.get("event_id") == report.event_id}
            for e in [*context.get("before", []), *([event] if event else []), *context.get("after", [])]
        ]
        subject = self._subject(report, event)
        room_url = None
        if report.room_id and Room.objects.filter(pk=report.room_id).exists():
            room_url = reverse("admin:rooms_room_change", args=[quote(report.room_id)])
        return TemplateResponse(
            request,
            self.change_form_template,
            {
                **self.admin_site.each_context(request),
                "title": f"Report #{report.pk}",
                "subtitle": None,
                "opts": self.opts,
                "original": report,
                "report": report,
                "event": readable_event(event) if event else None,
                "around": around,
                "subject": subject,
                "room_url": room_url,
                "state_form": ReportStateForm(initial={"state": report.state, "note": report.note}),
                "state_url": reverse("admin:moderation_report_state", args=[report.pk]),
                "act_url": reverse("admin:moderation_report_act", args=[report.pk]),
                "operations": self._available_operations(report, subject),
                "can_moderate": self.has_change_permission(request, report),
                "has_view_permission": True,
                "media": self.media,
                **(extra_context or {}),
            },
        )

    @staticmethod
    def _subject(report: Report, event: dict[str, Any] | None) -> str:
        """The user a one-click kick/ban is aimed at: the reported event's sender, or the reported user."""
        if event and event.get("sender"):
            return str(event["sender"])
        return report.target_user_id or ""

    @staticmethod
    def _available_operations(report: Report, subject: str) -> list[tuple[str, str]]:
        ops = []
        if report.room_id and report.event_id:
            ops.append(("redact_event", REPORT_OPERATIONS["redact_event"]))
        if report.room_id and subject:
            ops += [("kick", f"Kick {subject}"), ("ban", f"Ban {subject}")]
        if report.room_id:
            ops.append(("block", REPORT_OPERATIONS["block"]))
        return ops

    def state_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        report = self._report(request, object_id)
        if not self.has_change_permission(request, report):
            raise PermissionDenied
        form = ReportStateForm(request.POST)
        if not form.is_valid():
            self.message_user(request, form_errors_text(form), messages.ERROR)
            return HttpResponseRedirect(self.report_url(report))
        try:
            moderation.set_report_state(
                actor=request.user,  # type: ignore[arg-type]
                report=report,
                state=form.cleaned_data["state"],
                note=form.cleaned_data["note"],
            )
        except MatrixError as error:
            self.message_user(request, f"State change failed: {matrix_error_text(error)}", messages.ERROR)
        else:
            self.message_user(request, f"Report #{report.pk} is now {form.cleaned_data['state']}.",
                              messages.SUCCESS)
        return HttpResponseRedirect(self.report_url(report))

    def act_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One click from the report: redact its event, kick/ban its subject, block its room."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        report = self._report(request, object_id)
        if not self.has_change_permission(request, report):
            raise PermissionDenied
        op = request.POST.get("op", "")
        # The user a kick/ban aims at comes from the report itself, never from the form.
        subject = self._subject(report, report_context(report).get("event")) if op in ("kick", "ban") else ""
        reason = f"Report #{report.pk}" + (f": {report.reason}" if report.reason else "")
        actor: User = request.user  # type: ignore[assignment]
        try:
            if op == "redact_event" and report.event_id:
                moderation.redact_event(actor=actor, room_id=report.room_id, event_id=report.event_id,
                                        reason=reason)
                done = f"Redacted {report.event_id}."
            elif op == "kick" and subject and report.room_id:
                moderation.kick_member(actor=actor, room_id=report.room_id, user_id=subject, reason=reason)
                done = f"Kicked {subject}."
            elif op == "ban" and subject and report.room_id:
                moderation.ban_member(actor=actor, room_id=report.room_id, user_id=subject, reason=reason)
                done = f"Banned {subject}."
            elif op == "block" and report.room_id:
                moderation.block_room(actor=actor, room_id=report.room_id, reason=reason)
                done = f"Blocked {report.room_id}."
            else:
                self.message_user(request, f"Operation {op!r} does not apply to this report.", messages.ERROR)
                return HttpResponseRedirect(self.report_url(report))
        except MatrixError as error:
            self.message_user(request, f"{REPORT_OPERATIONS.get(op, op)} failed: {matrix_error_text(error)}",
                              messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(self.report_url(report))


admin.site.register(Report, ReportAdmin)


# -- Audit log ------------------------------------------------------------------------------------


class ActorFilter(admin.SimpleListFilter):
    """Filter by who acted (by name: the account may be gone, and null actors are the server)."""

    title = "actor"
    parameter_name = "actor_name"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = (
            AuditLogEntry.objects.order_by("actor_name").values_list("actor_name", flat=True).distinct()[:100]
        )
        return [(name, name or "(server)") for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditLogEntry]) -> QuerySet[AuditLogEntry]:
        value = self.value()
        return queryset if value is None else queryset.filter(actor_name=value)


class AuditLogEntryAdmin(admin.ModelAdmin):
    """The audit log: browsable, append-only. Nobody can add, edit or delete an entry here."""

    list_display = ("created_at", "actor_name", "action", "target_type", "target_link", "short_reason")
    list_filter = ("action", ActorFilter, "target_type", "created_at")
    search_fields = ("target", "reason", "actor_name", "action")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-pk")
    actions = None
    readonly_fields = ("created_at", "actor", "actor_name", "action", "target_type", "target", "reason",
                       "details_json")
    fields = readonly_fields

    @admin.display(description="target", ordering="target")
    def target_link(self, entry: AuditLogEntry) -> str:
        if entry.target_type == "room" and entry.target.startswith("!"):  # rooms are never deleted
            url = reverse("admin:rooms_room_change", args=[quote(entry.target)])
            return format_html('<a href="{}">{}</a>', url, entry.target)
        return entry.target

    @admin.display(description="reason")
    def short_reason(self, entry: AuditLogEntry) -> str:
        return _short(entry.reason or "", 80)

    @admin.display(description="details")
    def details_json(self, entry: AuditLogEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(entry.details, indent=2, ensure_ascii=False,
                                                       sort_keys=True))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


admin.site.register(AuditLogEntry, AuditLogEntryAdmin)
