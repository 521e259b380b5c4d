"""Moderation records: the append-only audit log of every moderation action, and the content reports
users file through the client API (spec "Reporting content"). Written only by moderation.actions."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone


class AuditLogIsAppendOnly(Exception):
    """Raised on any attempt to change or delete an audit log entry through the ORM."""


class AuditLogQuerySet(models.QuerySet["AuditLogEntry"]):
    """Bulk ``update()``/``delete()`` would bypass the model's guards: refused too."""

    def update(self, **kwargs: Any) -> int:
        raise AuditLogIsAppendOnly("Audit log entries cannot be changed")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("Audit log entries cannot be deleted")


class AuditLogEntry(models.Model):
    """One moderation action: who (``actor``; None = the system or a management command), what
    (``action``), on what (``target_type`` + ``target``), why (``reason``) and when. Append-only: the
    model refuses updates and deletes (a data-integrity guard; the admin offers neither)."""

    TARGET_TYPES = ("room", "user", "event", "report")

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        "accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Kept as text too: the entry still says who acted if the account row ever goes.
    actor_name = models.CharField(max_length=255)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=16, choices=[(t, t) for t in TARGET_TYPES])
    target = models.CharField(max_length=255, db_index=True)
    reason = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.target}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding or kwargs.get("force_update") or kwargs.get("update_fields"):
            raise AuditLogIsAppendOnly("Audit log entries cannot be changed")
        kwargs["force_insert"] = True  # an explicit pk must never overwrite an existing row
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("Audit log entries cannot be deleted")


class Report(models.Model):
    """A report of an event, a room or a user, filed by a local user; moderators work through them
    in the admin (``state``)."""

    KINDS = ("event", "room", "user")
    STATES = ("open", "in_progress", "resolved", "dismissed")

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    reporter = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=[(k, k) for k in KINDS])
    room_id = models.CharField(max_length=255, blank=True, default="")
    event_id = models.CharField(max_length=255, blank=True, default="")
    target_user_id = models.CharField(max_length=255, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    score = models.IntegerField(null=True, blank=True)
    state = models.CharField(
        max_length=16, choices=[(s, s.replace("_", " ")) for s in STATES], default="open", db_index=True
    )
    handled_by = models.ForeignKey(
        "accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "-created_at"], name="report_inbox")]

    def __str__(self) -> str:
        target = self.event_id or self.room_id or self.target_user_id
        return f"Report #{self.pk} ({self.kind} {target})"
