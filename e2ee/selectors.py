"""Reads of the end-to-end encryption tables (layer 2): key queries, key counts, device-list changes,
and the one query /sync makes for its E2EE sections."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

from django.db import connection
from django.db.models import Count, Model

from accounts.models import Device, User
from e2ee.models import (
    CrossSigningKey,
    DeviceKeys,
    DeviceListChange,
    FallbackKey,
    KeySignature,
    OneTimeKey,
    ToDeviceMessage,
)
from events.models import Event
from matrixsrv import rawsql
from matrixsrv.rawsql import Read
from rooms.models import Membership

JOIN = "join"
GONE = ("leave", "ban")  # memberships after which a user no longer shares the room
SIGNED_CURVE25519 = "signed_curve25519"


def otk_counts(device: Device) -> dict[str, int]:
    """``{algorithm: unclaimed one-time keys}``; ``signed_curve25519`` is always present (spec: for
    backwards compatibility the server sends it, even when 0)."""
    counts = {SIGNED_CURVE25519: 0}
    for algorithm, n in (
        OneTimeKey.objects.filter(device=device)
        .values("algorithm")
        .annotate(n=Count("id"))
        .values_list("algorithm", "n")
    ):
        counts[algorithm] = n
    return counts


def joined_room_ids(user: User) -> list[str]:
    return list(Membership.objects.filter(user=user, membership=JOIN).values_list("room_id", flat=True))


@cache
def _device_list_sql(vendor: str) -> tuple[str, str, str]:
    """The three device-list reads as hand-written SQL, built once per database vendor (compiling
    the equivalent ORM querysets cost ~10 ms of Python on every incremental /sync). Each selects one
    column, an mxid; their parameters come from ``_device_list_params``.

    1. key changes: users whose device lists or keys changed in ``(since, upto]`` and who share a
       room with the user (or are the user).
    2. newly sharing: local users who came to share a room with the user in ``(since, upto]``: they
       joined one of the user's rooms, or the user joined a room they are in. Their devices are news
       to the user's client (spec: ``changed`` lists the users who "now share an encrypted room"). A
       join that follows a join (a profile change) is not a new share. Someone who also shares
       another room is listed too: harmless, the client just downloads keys it has.
    3. no longer sharing: local users who share no room with the user now but did in ``(since,
       upto]``: they left (or were kicked or banned from) one of the user's rooms then, after being
       joined; or the user left a room they were in (joined now, or whose membership changed after
       ``since``). The spec's ``device_lists.left``: the client stops tracking their devices. (A
       rejected invite is no leave: the event's ``prev_content.membership`` must be ``join``.)
    """
    q = connection.ops.quote_name
    mem, ev, usr, dlc = (q(m._meta.db_table) for m in (Membership, Event, User, DeviceListChange))

    def col(model: type[Model], name: str) -> str:
        return q(model._meta.get_field(name).column)

    m_room, m_user, m_mxid = col(Membership, "room"), col(Membership, "user"), col(Membership, "mxid")
    m_ms, m_event = col(Membership, "membership"), col(Membership, "event")
    m_pos = col(Membership, "stream_pos")
    e_id, e_prev = col(Event, "id"), col(Event, "prev_content")
    u_id, u_mxid = col(User, "id"), col(User, "mxid")
    d_user, d_pos = col(DeviceListChange, "user"), col(DeviceListChange, "stream_pos")

    def was_joined(alias: str) -> str:
        """The event's ``prev_content.membership`` is ``"join"`` (NULL when it has none, as with the
        ORM's JSON key lookup)."""
        if vendor == "postgresql":
            return f"(({alias}.{e_prev} -> 'membership') = '\"join\"'::jsonb)"
        if vendor == "sqlite":
            path = "'$.\"membership\"'"
            return (
                f"((CASE WHEN JSON_TYPE({alias}.{e_prev}, {path}) IN ('true', 'false', 'null') "
                f"THEN JSON_TYPE({alias}.{e_prev}, {path}) ELSE JSON_EXTRACT({alias}.{e_prev}, {path}) END)"
                f" = 'join')"
            )
        raise NotImplementedError(f"device-list SQL for database vendor {vendor!r}")

    def not_a_rejoin(alias: str) -> str:
        return f"NOT ({was_joined(alias)} AND {alias}.{e_prev} IS NOT NULL)"

    gone = ", ".join(f"'{m}'" for m in GONE)
    # params: user_pk
    my_rooms = f"SELECT r.{m_room} FROM {mem} r WHERE r.{m_user} = %s AND r.{m_ms} = '{JOIN}'"
    # params: user_pk
    sharing = (
        f"SELECT s.{m_user} FROM {mem} s WHERE s.{m_ms} = '{JOIN}' AND s.{m_user} IS NOT NULL "
        f"AND s.{m_room} IN ({my_rooms})"
    )
    key_changes = (
        f"SELECT u.{u_mxid} FROM {dlc} d INNER JOIN {usr} u ON d.{d_user} = u.{u_id} "
        f"WHERE d.{d_pos} > %s AND d.{d_pos} <= %s AND (d.{d_user} = %s OR d.{d_user} IN ({sharing}))"
    )
    newly_sharing = (
        f"SELECT m.{m_mxid} FROM {mem} m INNER JOIN {ev} e ON m.{m_event} = e.{e_id} "
        f"WHERE m.{m_ms} = '{JOIN}' AND m.{m_room} IN ({my_rooms}) "
        f"AND m.{m_user} IS NOT NULL AND m.{m_user} <> %s "
        f"AND ((m.{m_pos} > %s AND m.{m_pos} <= %s AND {not_a_rejoin('e')}) "
        f"OR m.{m_room} IN (SELECT i.{m_room} FROM {mem} i INNER JOIN {ev} ie ON i.{m_event} = ie.{e_id} "
        f"WHERE i.{m_user} = %s AND i.{m_ms} = '{JOIN}' AND i.{m_pos} > %s AND i.{m_pos} <= %s "
        f"AND {not_a_rejoin('ie')}))"
    )
    no_longer_sharing = (
        f"SELECT m.{m_mxid} FROM {mem} m INNER JOIN {ev} e ON m.{m_event} = e.{e_id} "
        f"WHERE m.{m_user} IS NOT NULL AND m.{m_user} <> %s "
        f"AND ((m.{m_ms} IN ({gone}) AND m.{m_room} IN ({my_rooms}) "
        f"AND m.{m_pos} > %s AND m.{m_pos} <= %s AND {was_joined('e')}) "
        f"OR (m.{m_room} IN (SELECT l.{m_room} FROM {mem} l WHERE l.{m_user} = %s "
        f"AND l.{m_ms} IN ({gone}) AND l.{m_pos} > %s AND l.{m_pos} <= %s) "
        f"AND (m.{m_ms} = '{JOIN}' OR m.{m_pos} > %s))) "
        # NOT EXISTS, not NOT IN (no NULLs on either side, same meaning): PostgreSQL then checks only
        # the few candidate rows instead of first collecting every user sharing a room (1.2 -> 0.06 ms)
        f"AND NOT EXISTS (SELECT 1 FROM {mem} s WHERE s.{m_user} = m.{m_user} AND s.{m_ms} = '{JOIN}' "
        f"AND s.{m_room} IN ({my_rooms}))"
    )
    return key_changes, newly_sharing, no_longer_sharing


def _device_list_params(
    user_pk: int, since: int, upto: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The parameters of the three statements of ``_device_list_sql``, in their order."""
    return (
        (since, upto, user_pk, user_pk),
        (user_pk, user_pk, since, upto, user_pk, since, upto),
        (user_pk, user_pk, since, upto, user_pk, since, upto, since, user_pk),
    )


def device_list_changes(user: User, since: int, upto: int) -> tuple[list[str], list[str]]:
    """GET /keys/changes: ``(changed, left)`` between two stream positions, as /sync's
    ``device_lists`` would report them (see ``load_sync_e2ee``); one hand-written query."""
    key_changes, newly_sharing, no_longer_sharing = _device_list_sql(connection.vendor)
    p1, p2, p3 = _device_list_params(user.pk, since, upto)
    rows = rawsql.fetch_all(
        f"SELECT 0, c.* FROM ({key_changes}) AS c UNION ALL SELECT 0, j.* FROM ({newly_sharing}) AS j "
        f"UNION ALL SELECT 1, g.* FROM ({no_longer_sharing}) AS g",
        p1 + p2 + p3,
    )
    changed = {mx for kind, mx in rows if kind == 0}
    left = {mx for kind, mx in rows if kind == 1}
    return sorted(changed), sorted(left - changed)


def _merge_signatures(obj: dict[str, Any], signatures: list[KeySignature]) -> dict[str, Any]:
    if not signatures:
        return obj
    obj = {**obj, "signatures": {k: dict(v) for k, v in (obj.get("signatures") or {}).items()}}
    for s in signatures:
        obj["signatures"].setdefault(s.signer.mxid, {})[s.signer_key_id] = s.signature
    return obj


def query_keys(requester: User, wanted: dict[str, list[str]]) -> dict[str, Any]:
    """POST /keys/query for local users: device keys (all devices for ``[]``) and cross-signing keys.
    Unknown users get an empty device map; the user-signing key is shown only to its owner."""
    users = {u.mxid: u for u in User.objects.filter(mxid__in=list(wanted))}
    pks = [u.pk for u in users.values()]
    sigs: dict[tuple[int, str], list[KeySignature]] = defaultdict(list)
    for s in KeySignature.objects.filter(target_user_id__in=pks).select_related("signer"):
        sigs[(s.target_user_id, s.target_key_id)].append(s)
    device_keys: dict[str, dict[str, Any]] = {}
    for mxid, device_ids in wanted.items():
        device_keys[mxid] = {}
    rows = DeviceKeys.objects.filter(user_id__in=pks).select_related("device", "user")
    for row in rows:
        mxid = row.user.mxid
        device_ids = wanted.get(mxid) or []
        if device_ids and row.device.device_id not in device_ids:
            continue
        keys = _merge_signatures(row.keys, sigs.get((row.user_id, row.device.device_id), []))
        unsigned = dict(keys.get("unsigned") or {})
        if row.device.display_name is not None:
            unsigned["device_display_name"] = row.device.display_name
        device_keys[mxid][row.device.device_id] = {**keys, "unsigned": unsigned}
    result: dict[str, Any] = {
        "device_keys": device_keys,
        "failures": {},
        "master_keys": {},
        "self_signing_keys": {},
        "user_signing_keys": {},
    }
    for key in CrossSigningKey.objects.filter(user_id__in=pks).select_related("user"):
        if key.usage == CrossSigningKey.USER_SIGNING and key.user_id != requester.pk:
            continue
        merged = _merge_signatures(key.key, sigs.get((key.user_id, key.public_key), []))
        result[f"{key.usage}_keys"][key.user.mxid] = merged
    return result


def cross_signing_keys(user: User) -> dict[str, CrossSigningKey]:
    return {k.usage: k for k in CrossSigningKey.objects.filter(user=user)}


# -- /sync ------------------------------------------------------------------------------------------


@dataclass
class SyncE2EE:
    to_device: list[dict[str, Any]] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    otk_counts: dict[str, int] = field(default_factory=dict)
    unused_fallback_types: list[str] = field(default_factory=list)
    acknowledged: int = 0  # messages at or below ``since`` still stored (to delete)


def sync_e2ee_read(
    *, user: User, device_pk: int | None, since: int | None, head: int, device_lists: bool = True
) -> Read[SyncE2EE]:
    """Everything /sync sends about E2EE, in ONE query (a UNION ALL of small indexed reads): the
    device's to-device messages in ``(since, head]`` (all up to ``head`` in an initial sync), how many
    older ones are still stored (acknowledged by this ``since``), its one-time key counts and unused
    fallback key algorithms, and (incremental syncs only) ``device_lists``: the users sharing a room
    whose device lists changed in ``(since, head]`` or who came to share one then (``changed``), and
    those who no longer share any (``left``). Hand-written SQL, built once: compiling ORM querysets
    here cost more Python than the database spends running them. A ``Read``: /sync runs it, alone or
    batched with the other reads of the long-polls woken together.

    ``device_lists=False``: the caller knows that no membership and no device list changed in
    ``(since, head]`` (each of the three device-list reads looks only at such changes), so they are
    left out: planning them cost PostgreSQL ~5 ms, on every incremental sync."""
    parts: list[tuple[str, tuple[Any, ...]]] = []
    if device_pk is not None:
        parts += [(sql, (device_pk, *params)) for sql, params in _device_parts("= %s", since, head)]
    if since is not None and device_lists:
        key_changes, newly_sharing, no_longer_sharing = _device_list_sql(connection.vendor)
        p1, p2, p3 = _device_list_params(user.pk, since, head)
        parts.append((f"SELECT 5, 0, 0, c.*, '', '' FROM ({key_changes}) AS c", p1))
        parts.append((f"SELECT 5, 0, 0, j.*, '', '' FROM ({newly_sharing}) AS j", p2))
        parts.append((f"SELECT 6, 0, 0, g.*, '', '' FROM ({no_longer_sharing}) AS g", p3))
    sql = " UNION ALL ".join(f"SELECT * FROM ({p}) AS p{i}" for i, (p, _) in enumerate(parts))
    params: tuple[Any, ...] = sum((p for _, p in parts), ())
    mergeable = device_pk is not None and not (since is not None and device_lists)
    merge = _DevicesMerge(since, head) if mergeable else None
    return Read(sql, params, partial(_parse_sync_e2ee, device_pk), merge, device_pk)


def _device_parts(
    device: str, since: int | None, head: int, *, merged: bool = False
) -> list[tuple[str, tuple[Any, ...]]]:
    """The device's parts of ``sync_e2ee_read``: statements whose device condition is ``device``
    (its parameters come first, then those returned). ``merged``: several devices, each row led by
    its device."""
    t_msg = ToDeviceMessage._meta.db_table
    t_otk = OneTimeKey._meta.db_table
    t_fb = FallbackKey._meta.db_table
    key = "device_id, " if merged else ""
    parts = [
        (
            f"SELECT {key}1, id, stream_pos, sender, type, CAST(content AS TEXT) FROM {t_msg} "
            f"WHERE device_id {device} AND stream_pos > %s AND stream_pos <= %s",
            (-1 if since is None else since, head),
        )
    ]
    if since is not None:
        parts.append(
            (
                f"SELECT {key}2, COUNT(*), 0, '', '', '' FROM {t_msg} "
                f"WHERE device_id {device} AND stream_pos <= %s"
                + (" GROUP BY device_id" if merged else ""),
                (since,),
            )
        )
    parts.append(
        (
            f"SELECT {key}3, COUNT(*), 0, algorithm, '', '' FROM {t_otk} WHERE device_id {device} "
            f"GROUP BY {key}algorithm",
            (),
        )
    )
    parts.append(
        (f"SELECT {key}4, 0, 0, algorithm, '', '' FROM {t_fb} WHERE device_id {device} AND used = %s",
         (False,))
    )
    return parts


@dataclass(frozen=True)
class _DevicesMerge:
    """``sync_e2ee_read``s of several devices (no device-list parts), at one ``since`` and head: ONE
    statement (rawsql.Merge), as the long-polls one message wakes need."""

    since: int | None
    head: int

    def statement(self, reads: Sequence[Read[Any]]) -> tuple[str, Sequence[Any]]:
        devices = list(dict.fromkeys(read.key for read in reads))
        parts = _device_parts(f"IN ({rawsql.int_list(devices)})", self.since, self.head, merged=True)
        sql = " UNION ALL ".join(f"SELECT * FROM ({p}) AS p{i}" for i, (p, _) in enumerate(parts))
        return sql, [value for _, params in parts for value in params]


def _parse_sync_e2ee(device_pk: int | None, rows: list[tuple[Any, ...]]) -> SyncE2EE:
    out = SyncE2EE()
    messages = []
    if device_pk is not None:
        out.otk_counts[SIGNED_CURVE25519] = 0
    for kind, n, pos, a, b, c in rows:
        if kind == 1:
            messages.append((pos, n, {"sender": a, "type": b, "content": json.loads(c)}))
        elif kind == 2:
            out.acknowledged = int(n)
        elif kind == 3:
            out.otk_counts[a] = int(n)
        elif kind == 4:
            out.unused_fallback_types.append(a)
        elif kind == 5:
            out.changed.append(a)
        elif kind == 6:
            out.left.append(a)
    out.to_device = [m for _, _, m in sorted(messages, key=lambda t: (t[0], t[1]))]
    out.changed = sorted(set(out.changed))
    out.left = sorted(set(out.left) - set(out.changed))
    out.unused_fallback_types.sort()
    return out
