"""History visibility for one user and one event (events/visibility.py), rule numbers from the
client-server spec's "Room History Visibility" server behaviour."""

from __future__ import annotations

import pytest

from events.visibility import effective_history_visibility, is_event_visible

J, I, L, B, K = "join", "invite", "leave", "ban", "knock"


@pytest.mark.parametrize(
    ("visibility", "at_event", "now", "visible"),
    [
        # rule 1: world_readable, whoever you are
        pytest.param("world_readable", None, None, True, id="1-world-readable-stranger"),
        pytest.param("world_readable", L, L, True, id="1-world-readable-after-leaving"),
        pytest.param("world_readable", B, B, True, id="1-world-readable-banned"),
        # rule 2: joined at the event
        pytest.param("joined", J, J, True, id="2-joined-at-event"),
        pytest.param("joined", J, L, True, id="2-joined-at-event-left-since"),
        pytest.param("invited", J, B, True, id="2-joined-at-event-banned-since"),
        pytest.param("shared", J, None, True, id="2-joined-at-event-shared"),
        # rule 3: shared, and joined since the event
        pytest.param("shared", None, J, True, id="3-shared-joined-later"),
        pytest.param("shared", I, J, True, id="3-shared-invited-then-joined"),
        pytest.param("shared", L, J, True, id="3-shared-rejoined"),
        pytest.param("shared", None, I, False, id="3-shared-only-invited-now-deny"),
        pytest.param("shared", None, None, False, id="3-shared-stranger-deny"),
        pytest.param("shared", L, L, False, id="3-shared-after-leaving-deny"),
        pytest.param("shared", None, K, False, id="3-shared-knocking-deny"),
        # rule 4: invited, and invited at the event
        pytest.param("invited", I, I, True, id="4-invited-while-invited"),
        pytest.param("invited", I, J, True, id="4-invited-then-joined"),
        pytest.param("invited", I, L, True, id="4-invited-then-rejected"),
        pytest.param("invited", None, J, False, id="5-invited-before-invite-deny"),
        pytest.param("invited", K, J, False, id="5-invited-knocking-at-event-deny"),
        # rule 5: otherwise deny
        pytest.param("joined", I, J, False, id="5-joined-only-invited-at-event-deny"),
        pytest.param("joined", None, J, False, id="5-joined-before-join-deny"),
        pytest.param("joined", L, J, False, id="5-joined-between-memberships-deny"),
        # no or unknown visibility means shared
        pytest.param(None, None, J, True, id="default-shared-joined-later"),
        pytest.param(None, None, L, False, id="default-shared-never-joined-deny"),
        pytest.param("bogus", None, J, True, id="unknown-is-shared"),
        pytest.param("bogus", None, None, False, id="unknown-is-shared-deny"),
    ],
)
def test_history_visibility_rules(
    visibility: str | None, at_event: str | None, now: str | None, visible: bool
) -> None:
    assert (
        is_event_visible(history_visibility=visibility, membership_at_event=at_event, current_membership=now)
        is visible
    )


@pytest.mark.parametrize(
    ("joined_since", "now", "visible"),
    [
        pytest.param(True, L, True, id="3-joined-after-event-then-left-keeps-history"),
        pytest.param(False, J, False, id="3-explicit-not-joined-since-deny"),
        pytest.param(None, J, True, id="3-defaults-to-joined-now"),
    ],
)
def test_shared_with_has_joined_since_event(joined_since: bool | None, now: str, visible: bool) -> None:
    assert (
        is_event_visible(
            history_visibility="shared",
            membership_at_event=None,
            current_membership=now,
            has_joined_since_event=joined_since,
        )
        is visible
    )


@pytest.mark.parametrize(
    ("after", "before", "at_event", "visible"),
    [
        pytest.param("joined", "world_readable", None, True, id="hv-event-before-world-readable"),
        pytest.param("world_readable", "joined", None, True, id="hv-event-after-world-readable"),
        pytest.param("joined", None, None, False, id="hv-first-event-before-is-shared-deny"),
        pytest.param("joined", "invited", I, True, id="hv-event-before-invited-while-invited"),
        pytest.param("joined", "shared", L, False, id="hv-event-neither-allows-deny"),
    ],
)
def test_history_visibility_event_boundary(
    after: str, before: str | None, at_event: str | None, visible: bool
) -> None:
    assert (
        is_event_visible(
            history_visibility=after,
            membership_at_event=at_event,
            current_membership=L,
            is_history_visibility_event=True,
            history_visibility_before_event=before,
        )
        is visible
    )


@pytest.mark.parametrize("membership", [J, I, L, B, K, None])
def test_own_membership_events_always_visible(membership: str | None) -> None:
    assert is_event_visible(
        history_visibility="joined",
        membership_at_event=membership,
        current_membership=L,
        is_state_event_of_membership_for_user=True,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("joined", "joined"),
        ("invited", "invited"),
        ("world_readable", "world_readable"),
        ("shared", "shared"),
        (None, "shared"),
        ("nonsense", "shared"),
        (5, "shared"),
    ],
)
def test_effective_history_visibility(value: object, expected: str) -> None:
    assert effective_history_visibility(value) == expected


# -- RoomVisibility.joined_throughout (/sync's rooms joined since before ``since``) ------------------

HISTORIES = [  # the user's membership events (position, membership), the last one their current join
    [(10, J)],
    [(5, I), (10, J)],
    [(3, J), (6, L), (8, I), (10, J)],
    [(2, K), (4, L), (7, J), (10, J)],  # a profile change: join after join
    [(1, B), (5, L), (10, J)],
]


@pytest.mark.parametrize("history", HISTORIES)
@pytest.mark.parametrize("visibility", ["world_readable", "shared", "invited", "joined", "bogus"])
def test_joined_throughout_sees_what_the_full_history_sees_after_the_join(
    history: list[tuple[int, str]], visibility: str
) -> None:
    from events.models import Event
    from events.timeline import RoomVisibility

    user = "@u:example.org"
    full = RoomVisibility(
        "!r:example.org", user, tuple(p for p, _ in history), tuple(m for _, m in history),
        max(p for p, m in history if m == J),
    )
    join_pos = history[-1][0]
    short = RoomVisibility.joined_throughout("!r:example.org", user, join_pos)
    events = [
        Event(
            stream_pos=pos, type="m.room.message", state_key=None, content={}, history_visibility=visibility
        )
        for pos in (join_pos, join_pos + 1, join_pos + 50)
    ] + [
        Event(stream_pos=join_pos + 2, type="m.room.history_visibility", state_key="",
              content={"history_visibility": "joined"}, history_visibility=visibility),
        Event(stream_pos=join_pos + 3, type="m.room.member", state_key=user, content={"membership": J},
              history_visibility=visibility),
    ]
    for event in events:
        assert short.can_see(event) == full.can_see(event) is True, event.stream_pos
    for pos in (join_pos, join_pos + 1, join_pos + 99):
        assert short.membership_at(pos) == full.membership_at(pos) == J
