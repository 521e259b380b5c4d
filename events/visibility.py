"""Room history visibility: may this user see this event? Pure: stdlib only.

The spec (client-server API, "Room History Visibility", server behaviour), applied to the state of
the room *at that event*:

1. If the ``history_visibility`` was ``world_readable``, allow.
2. If the user's ``membership`` was ``join``, allow.
3. If ``history_visibility`` was ``shared``, and the user joined the room at any point after the
   event was sent, allow.
4. If the user's ``membership`` was ``invite``, and ``history_visibility`` was ``invited``, allow.
5. Otherwise, deny.

Plus two boundary rules: an ``m.room.history_visibility`` event is visible if the visibility before
*or* after it allows it, and a user's own ``m.room.member`` events likewise with their membership
before or after. A missing or unknown visibility counts as ``shared``.

Our reading, and the inputs the caller supplies (all cheap: the events table stores the visibility
in force when each event was sent, and the membership history is one indexed query):

* "at that event" means the state *after* the event (Synapse's reading): ``history_visibility``
  and ``membership_at_event`` include the event itself when it changes them. For an
  ``m.room.history_visibility`` event, also pass ``is_history_visibility_event=True`` and the
  value before it as ``history_visibility_before_event``.
* "joined the room at any point after the event" (rule 3): ``has_joined_since_event``. If the
  caller doesn't know it, it defaults to "the user is joined now" (``current_membership``), which
  is a sound under-approximation and exactly Synapse's behaviour (Synapse doesn't track a
  join-then-leave after the event either). A user who joined after the event and has since left
  keeps the history they could see ("After a user has left a room, they may see any events which
  they were allowed to see before they left"), so a caller that tracks joins should pass
  ``has_joined_since_event=True`` for events before such a join.
* The user's own membership events are always visible to them (a superset of the spec's
  before-or-after rule, as in Synapse, which always shows a user their own leave, and the client-server
  API delivers invites and knocks to the user anyway): pass
  ``is_state_event_of_membership_for_user=True``.
"""

from __future__ import annotations

from events.pdu import HistoryVisibility, Membership


def effective_history_visibility(value: object) -> str:
    """The spec's default: no ``history_visibility``, or one we don't understand, means ``shared``."""
    return value if isinstance(value, str) and value in HistoryVisibility.ALL else HistoryVisibility.SHARED


def _allowed(visibility: str, membership_at_event: str | None, joined_since: bool) -> bool:
    if visibility == HistoryVisibility.WORLD_READABLE:  # rule 1
        return True
    if membership_at_event == Membership.JOIN:  # rule 2
        return True
    if visibility == HistoryVisibility.SHARED and joined_since:  # rule 3
        return True
    # rule 4, then rule 5
    return visibility == HistoryVisibility.INVITED and membership_at_event == Membership.INVITE


def is_event_visible(
    *,
    history_visibility: str | None,
    membership_at_event: str | None,
    current_membership: str | None,
    is_state_event_of_membership_for_user: bool = False,
    is_history_visibility_event: bool = False,
    history_visibility_before_event: str | None = None,
    has_joined_since_event: bool | None = None,
) -> bool:
    """Whether a user may see one event.

    * ``history_visibility``: the room's ``m.room.history_visibility`` at the event (None: none set).
    * ``membership_at_event``: the user's membership at the event (join/invite/leave/ban/knock, or
      None if they had no membership event).
    * ``current_membership``: the user's membership now (used for rule 3 when
      ``has_joined_since_event`` is None).
    * ``is_state_event_of_membership_for_user``: the event is the user's own m.room.member event.
    * ``is_history_visibility_event`` / ``history_visibility_before_event``: the event is an
      m.room.history_visibility event, and the value it replaced (None: there was none, which
      means ``shared``); the event is visible if either value allows it.
    * ``has_joined_since_event``: whether the user joined the room after the event was sent.
    """
    if is_state_event_of_membership_for_user:
        return True
    joined_since = (
        has_joined_since_event
        if has_joined_since_event is not None
        else current_membership == Membership.JOIN
    )
    if _allowed(effective_history_visibility(history_visibility), membership_at_event, joined_since):
        return True
    if is_history_visibility_event:
        return _allowed(
            effective_history_visibility(history_visibility_before_event), membership_at_event, joined_since
        )
    return False
