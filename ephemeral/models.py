"""Typing notifications and receipts: the rooms' ephemeral data (spec "Typing Notifications",
"Receipts"). Kept in the database, so every worker sees the same state, and synced by stream
position (events/stream.py) like everything else a client syncs."""

from __future__ import annotations

from django.db import models


class Typing(models.Model):
    """Whether one user is typing in one room. One row per (room, user), kept when the user stops:
    ``expires_at_ms`` 0 means "not typing" (stopped, or its expiry was announced), and the row's
    ``stream_pos`` then records *when* the room's typing set changed, which /sync needs to send the
    (smaller) set. A row with ``0 < expires_at_ms <= now`` has expired but the change is not announced
    yet: readers don't show it, and ``ephemeral.actions.expire_typing`` announces it."""

    room = models.ForeignKey("rooms.Room", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    mxid = models.CharField(max_length=255)
    expires_at_ms = models.BigIntegerField(default=0)
    stream_pos = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="typing_room_user_unique")]
        indexes = [
            models.Index(fields=["room", "stream_pos"]),
            models.Index(fields=["room", "expires_at_ms"]),
        ]


class Receipt(models.Model):
    """A user's latest receipt of one type in one room (per thread): ``thread_id`` "" is unthreaded,
    else "main" or a thread root's event ID (spec: one receipt per (user, type, thread))."""

    room = models.ForeignKey("rooms.Room", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    mxid = models.CharField(max_length=255)
    receipt_type = models.CharField(max_length=64)
    thread_id = models.CharField(max_length=255, default="", blank=True)
    event_id = models.CharField(max_length=255)
    event_pos = models.BigIntegerField()  # the event's stream position: receipts only move forward
    ts = models.BigIntegerField()
    stream_pos = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["room", "user", "receipt_type", "thread_id"],
                name="receipt_room_user_type_thread_unique",
            )
        ]
        indexes = [models.Index(fields=["room", "stream_pos"])]
