"""Presence (spec "Presence"): one row per user who ever had one, kept in the database so every
worker sees the same state, and synced by stream position (events/stream.py) like everything else.

The row holds the record of ``presence.rules`` (what was asked for, and the clocks) and what was
last *announced* (``shown_state``, ``shown_active``, at ``stream_pos``). The presence clients see is
derived from the record and the time (``rules.shown``); when that differs from what was announced, the
change is due: ``due_ms`` is the instant it happens (``rules.due_ms``), so a reader finds the
unannounced changes (``due_ms <= now``) and the time to wake a waiting /sync with one indexed look.
"""

from __future__ import annotations

from django.db import models

from presence.rules import OFFLINE, PresenceRecord


class Presence(models.Model):
    user = models.OneToOneField("accounts.User", on_delete=models.CASCADE, primary_key=True, related_name="+")
    mxid = models.CharField(max_length=255)
    requested = models.CharField(max_length=16, default=OFFLINE)
    status_msg = models.TextField(null=True, blank=True)
    last_active_ms = models.BigIntegerField(default=0)
    online_until_ms = models.BigIntegerField(default=0)
    shown_state = models.CharField(max_length=16, default=OFFLINE)
    shown_active = models.BooleanField(default=False)
    due_ms = models.BigIntegerField(null=True, blank=True)
    stream_pos = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["stream_pos"]), models.Index(fields=["due_ms"])]

    def record(self) -> PresenceRecord:
        return PresenceRecord(self.requested, self.status_msg, self.last_active_ms, self.online_until_ms)

    def __str__(self) -> str:
        return f"{self.mxid} {self.shown_state}"
