"""The timeline core: every event of every room, the rooms' current state, and the stream head.

Nothing but events.actions.append_event inserts an Event or changes CurrentState or StreamHead.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class StreamHead(models.Model):
    """One row: the newest stream position. Every syncable row (events now; receipts, account data,
    to-device later) takes its position from here with ``UPDATE … SET pos = pos + 1 RETURNING pos``.

    The row lock taken by that UPDATE is held until COMMIT, so positions become visible in commit
    order: a reader that sees head = N finds every row at or below N already committed (DESIGN.md
    §4.4, the one-row alternative). A rollback gives the number back: there are no gaps at all.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    pos = models.BigIntegerField(default=0)


class Event(models.Model):
    """A persisted event (PDU) in the format clients see, plus the DAG fields federation will need."""

    stream_pos = models.BigIntegerField(unique=True)
    event_id = models.CharField(max_length=255, unique=True)
    room = models.ForeignKey("rooms.Room", on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=255)
    state_key = models.TextField(null=True, blank=True)
    sender = models.CharField(max_length=255)
    content = models.JSONField()
    origin_server_ts = models.BigIntegerField()
    depth = models.BigIntegerField()
    prev_events = models.JSONField(default=list)
    auth_events = models.JSONField(default=list)
    hashes = models.JSONField(default=dict)
    # Convenience columns derived at write time (never change afterwards, except on redaction):
    membership = models.CharField(max_length=16, null=True, blank=True)  # m.room.member: content.membership
    redacts = models.CharField(max_length=255, null=True, blank=True)  # m.room.redaction: the target
    history_visibility = models.CharField(max_length=32, default="shared")  # in force when sent
    # unsigned data: the state this event replaced, and the redaction that pruned it (client format)
    replaces_state = models.CharField(max_length=255, null=True, blank=True)
    prev_content = models.JSONField(null=True, blank=True)
    prev_sender = models.CharField(max_length=255, null=True, blank=True)
    redacted_because = models.JSONField(null=True, blank=True)
    # Idempotent sends: one event per (device, txn_id). The device's id also lets /sync show
    # unsigned.transaction_id to the sending device only.
    sender_device = models.ForeignKey(
        "accounts.Device", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    txn_id = models.CharField(max_length=255, null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sender_device", "txn_id"],
                condition=Q(sender_device__isnull=False, txn_id__isnull=False),
                name="event_unique_txn_per_device",
            )
        ]
        indexes = [
            models.Index(fields=["room", "stream_pos"], name="event_room_stream"),
            models.Index(fields=["room", "type", "state_key", "stream_pos"], name="event_room_state"),
            models.Index(fields=["room", "origin_server_ts"], name="event_room_ts"),
            models.Index(fields=["sender", "stream_pos"], name="event_sender_stream"),
        ]

    def __str__(self) -> str:
        return self.event_id

    @property
    def is_state(self) -> bool:
        return self.state_key is not None


class CurrentState(models.Model):
    """The room's current state: for each (type, state_key), the event that set it."""

    room = models.ForeignKey("rooms.Room", on_delete=models.CASCADE, related_name="current_state")
    type = models.CharField(max_length=255)
    state_key = models.TextField()
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "type", "state_key"], name="current_state_unique")
        ]
