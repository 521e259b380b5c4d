"""Push storage: a user's push-rule state and their pushers.

* ``PushRuleState``: one row per user who changed anything. ``overrides`` holds the enabled flag
  and/or actions the user set on server-default rules, keyed ``"<kind>/<rule_id>"``; ``custom``
  holds the user's own rules (each with its ``kind``), most important first within a kind. These
  are exactly the shapes ``push.rules.merge_ruleset`` takes. A user with no row has the defaults.
  Writers lock the row (``select_for_update``) so concurrent PUTs never lose an update.
* ``Pusher``: ``POST /pushers/set``; one per (user, app_id, pushkey). The same app_id + pushkey
  may belong to several users only when set with ``append: true``.
* ``PushAction``: one row per (user, event) the user's push rules say notifies, written with the
  event (``push.actions.plan_push_actions``). The unread counts of /sync and ``GET /notifications``
  read these rows against the user's read receipts: a row is read when a receipt covering its
  thread points at or after its ``stream_pos``.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from accounts.models import Device, User


class PushRuleState(models.Model):
    user = models.OneToOneField(
        User, on_delete=models.CASCADE, primary_key=True, related_name="push_rule_state"
    )
    overrides = models.JSONField(
        default=dict, help_text='{"<kind>/<rule_id>": {"enabled"?: bool, "actions"?: [...]}}'
    )
    custom = models.JSONField(
        default=list, help_text="The user's own rules, each with its kind, most important first."
    )
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"push rules of {self.user_id}"


class Pusher(models.Model):
    class Kind(models.TextChoices):
        HTTP = "http"
        EMAIL = "email"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="pushers")
    # The device that set it, if any: its pushers go away with it (as Synapse drops a logged-out
    # access token's pushers).
    device = models.ForeignKey(
        Device, on_delete=models.CASCADE, null=True, blank=True, related_name="pushers"
    )
    app_id = models.CharField(max_length=64)
    pushkey = models.CharField(max_length=512)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    app_display_name = models.TextField()
    device_display_name = models.TextField()
    profile_tag = models.TextField(null=True, blank=True)
    lang = models.CharField(max_length=64)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "app_id", "pushkey"], name="push_pusher_unique_per_user"),
        ]
        indexes = [models.Index(fields=["app_id", "pushkey"], name="push_pusher_app_pushkey")]

    def __str__(self) -> str:
        return f"{self.kind} pusher {self.app_id} of {self.user_id}"


class PushAction(models.Model):
    """A notification: event ``event`` notified ``user`` with ``actions`` (the matching rule's).

    ``stream_pos`` is the event's (receipts compare event positions); ``thread_id`` is "main" or the
    thread root's event ID (push.md, "Receiving notifications": counts are partitioned per thread).
    Only notifying events get a row (``notify`` is always true today; kept so a highlight-only row
    can be told apart later). ``ts`` is when the notification was made (ms), as ``GET
    /notifications`` reports it. Rooms and events are named by string, as push sits below them.
    """

    # No database-level foreign keys (db_constraint=False): the rows are written on every send, inside
    # the stream position's lock, and PostgreSQL checks deferred foreign keys at COMMIT: three index
    # lookups per row (27 for a 10-member room) while every writer waits. The rows are derived from
    # the event they are written with; deleting a user, room or event still deletes them (Django's
    # on_delete cascade runs in Python).
    # Nor single-column indexes: every index is written for every row, so the table keeps four (the
    # primary key and the three below, which also serve the cascades by user and by event). Deleting
    # a room (an admin's purge, rare) scans for its rows.
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False)
    room = models.ForeignKey(
        "rooms.Room", on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    event = models.ForeignKey(
        "events.Event", on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    stream_pos = models.BigIntegerField()
    thread_id = models.CharField(max_length=255, default="main")
    notify = models.BooleanField(default=True)
    highlight = models.BooleanField(default=False)
    actions = models.JSONField(default=list)
    ts = models.BigIntegerField()

    class Meta:
        constraints = [
            # (event, user): the event's rows are found by it too (deleting an event)
            models.UniqueConstraint(fields=["event", "user"], name="push_action_event_user_unique"),
        ]
        indexes = [
            # unread counts: the user's rows in the answer's rooms after a receipt
            models.Index(fields=["user", "room", "stream_pos"], name="push_action_user_room_pos"),
            # GET /notifications: newest first, paginated by position
            models.Index(fields=["user", "stream_pos"], name="push_action_user_pos"),
        ]

    def __str__(self) -> str:
        return f"notification of {self.user_id} at {self.stream_pos}"
