"""Rooms, aliases and the materialized current membership. All written only by the events service
(events.actions) and rooms.actions; the admin and the API are clients of those actions."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Room(models.Model):
    """A room. ``room_id`` ("!…") is the primary key, so ``event.room_id`` is the Matrix room ID."""

    room_id = models.CharField(max_length=255, primary_key=True)
    version = models.CharField(max_length=32)
    creator = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    is_public = models.BooleanField(default=False, help_text="Published in the room directory.")
    blocked = models.BooleanField(default=False, help_text="Nobody can join or send.")
    blocked_reason = models.TextField(blank=True, default="", help_text="Why the room was blocked (moderation).")
    # The DAG tip (one server: the events form a chain).
    last_event_id = models.CharField(max_length=255, null=True, blank=True)
    depth = models.BigIntegerField(default=0)
    last_stream_pos = models.BigIntegerField(default=0)
    # Denormalized from current state by the events service, in the same transaction.
    name = models.TextField(null=True, blank=True)
    topic = models.TextField(null=True, blank=True)
    avatar_url = models.TextField(null=True, blank=True)
    canonical_alias = models.CharField(max_length=255, null=True, blank=True)
    join_rule = models.CharField(max_length=32, default="invite")
    history_visibility = models.CharField(max_length=32, default="shared")
    guest_access = models.CharField(max_length=32, default="forbidden")
    room_type = models.CharField(max_length=255, null=True, blank=True)
    encryption = models.CharField(max_length=255, null=True, blank=True)
    joined_count = models.IntegerField(default=0)
    invited_count = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["is_public", "-joined_count"], name="room_directory")]

    def __str__(self) -> str:
        return self.name or self.canonical_alias or self.room_id


class RoomAlias(models.Model):
    alias = models.CharField(max_length=255, primary_key=True)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="aliases")
    creator = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.alias


class Membership(models.Model):
    """Current membership of one user in one room (the latest m.room.member state event)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        "accounts.User", on_delete=models.CASCADE, null=True, blank=True, related_name="memberships"
    )  # null for users of other servers
    mxid = models.CharField(max_length=255)
    membership = models.CharField(max_length=16)
    event = models.ForeignKey("events.Event", on_delete=models.CASCADE, related_name="+")
    stream_pos = models.BigIntegerField()
    displayname = models.TextField(null=True, blank=True)
    avatar_url = models.TextField(null=True, blank=True)
    forgotten = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "mxid"], name="membership_unique")]
        indexes = [
            models.Index(fields=["user", "membership"], name="membership_user"),
            models.Index(fields=["room", "membership"], name="membership_room"),
            # /sync's "did any membership change after since?" (sync.selectors._head_read)
            models.Index(fields=["stream_pos"], name="membership_stream_pos"),
        ]

    def __str__(self) -> str:
        return f"{self.mxid} {self.membership} {self.room_id}"
