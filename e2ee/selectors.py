"""Reads of the end-to-end encryption tables (layer 2): key queries, key counts, device-list changes,
and the one query /sync makes for its E2EE sections."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Count, F, Q, QuerySet

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


def sharing_user_pks(user_pk: int) -> QuerySet[Membership]:
    """The local users joined to a room the user is joined to (a subquery of user pks)."""
    rooms = Membership.objects.filter(user_id=user_pk, membership=JOIN).values("room_id")
    return Membership.objects.filter(room_id__in=rooms, membership=JOIN, user__isnull=False).values("user_id")


def joined_room_ids(user: User) -> list[str]:
    return list(Membership.objects.filter(user=user, membership=JOIN).values_list("room_id", flat=True))


def _key_changes(user_pk: int, since: int, upto: int) -> QuerySet[DeviceListChange]:
    """Users whose device lists or keys changed in ``(since, upto]`` and who share a room with the
    user (or are the user); their user IDs as ``mx``."""
    return (
        DeviceListChange.objects.filter(stream_pos__gt=since, stream_pos__lte=upto)
        .filter(Q(user_id=user_pk) | Q(user_id__in=sharing_user_pks(user_pk)))
        .annotate(mx=F("user__mxid"))
        .values_list("mx")
    )


def _newly_sharing(user_pk: int, since: int, upto: int) -> QuerySet[Membership]:
    """Local users who came to share a room with the user in ``(since, upto]``: they joined one of
    the user's rooms, or the user joined a room they are in. Their devices are news to the user's
    client (spec: ``changed`` lists the users who "now share an encrypted room"). A join that follows
    a join (a profile change) is not a new share. Someone who also shares another room is listed
    too: harmless, the client just downloads keys it has."""
    mine = Membership.objects.filter(user_id=user_pk, membership=JOIN)
    became_member = Q(stream_pos__gt=since, stream_pos__lte=upto) & ~Q(event__prev_content__membership=JOIN)
    i_joined = mine.filter(became_member).values("room_id")
    return (
        Membership.objects.filter(membership=JOIN, user__isnull=False, room_id__in=mine.values("room_id"))
        .exclude(user_id=user_pk)
        .filter(became_member | Q(room_id__in=i_joined))
        .values_list("mxid")
    )


def _no_longer_sharing(user_pk: int, since: int, upto: int) -> QuerySet[Membership]:
    """Local users who share no room with the user now but did in ``(since, upto]``: they left (or
    were kicked or banned from) one of the user's rooms then, after being joined; or the user left a
    room they were in (joined now, or whose membership changed after ``since``). The spec's
    ``device_lists.left``: the client stops tracking their devices. (A rejected invite is no leave.)"""
    mine = Membership.objects.filter(user_id=user_pk, membership=JOIN).values("room_id")
    i_left = Membership.objects.filter(
        user_id=user_pk, membership__in=GONE, stream_pos__gt=since, stream_pos__lte=upto
    ).values("room_id")
    they_left = Q(room_id__in=mine, membership__in=GONE, stream_pos__gt=since, stream_pos__lte=upto) & Q(
        event__prev_content__membership=JOIN  # not a rejected invite: they were in the room
    )
    were_with_me = Q(room_id__in=i_left) & (Q(membership=JOIN) | Q(stream_pos__gt=since))
    return (
        Membership.objects.filter(user__isnull=False)
        .exclude(user_id=user_pk)
        .filter(they_left | were_with_me)
        .exclude(user_id__in=sharing_user_pks(user_pk))
        .values_list("mxid")
    )


def device_list_changes(user: User, since: int, upto: int) -> tuple[list[str], list[str]]:
    """GET /keys/changes: ``(changed, left)`` between two stream positions, as /sync's
    ``device_lists`` would report them (see ``load_sync_e2ee``)."""
    changed = {mx for (mx,) in _key_changes(user.pk, since, upto)}
    changed.update(mx for (mx,) in _newly_sharing(user.pk, since, upto))
    left = {mx for (mx,) in _no_longer_sharing(user.pk, since, upto)}
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


def _sql(qs: QuerySet[Any]) -> tuple[str, tuple[Any, ...]]:
    sql, params = qs.query.sql_with_params()
    return sql, tuple(params)


def load_sync_e2ee(*, user: User, device_pk: int | None, since: int | None, head: int) -> SyncE2EE:
    """Everything /sync sends about E2EE, in ONE query (a UNION ALL of small indexed reads): the
    device's to-device messages in ``(since, head]`` (all up to ``head`` in an initial sync), how many
    older ones are still stored (acknowledged by this ``since``), its one-time key counts and unused
    fallback key algorithms, and (incremental syncs only) ``device_lists``: the users sharing a room
    whose device lists changed in ``(since, head]`` or who came to share one then (``changed``), and
    those who no longer share any (``left``)."""
    out = SyncE2EE()
    parts: list[tuple[str, tuple[Any, ...]]] = []
    t_msg = ToDeviceMessage._meta.db_table
    t_otk = OneTimeKey._meta.db_table
    t_fb = FallbackKey._meta.db_table
    if device_pk is not None:
        lower = -1 if since is None else since
        parts.append(
            (
                (
                    f"SELECT 1, id, stream_pos, sender, type, CAST(content AS TEXT) FROM {t_msg} "
                    f"WHERE device_id = %s AND stream_pos > %s AND stream_pos <= %s"
                ),
                (device_pk, lower, head),
            )
        )
        if since is not None:
            parts.append(
                (
                    (
                        f"SELECT 2, COUNT(*), 0, '', '', '' FROM {t_msg} "
                        f"WHERE device_id = %s AND stream_pos <= %s"
                    ),
                    (device_pk, since),
                )
            )
        parts.append(
            (
                (
                    f"SELECT 3, COUNT(*), 0, algorithm, '', '' FROM {t_otk} "
                    f"WHERE device_id = %s GROUP BY algorithm"
                ),
                (device_pk,),
            )
        )
        parts.append(
            (
                f"SELECT 4, 0, 0, algorithm, '', '' FROM {t_fb} WHERE device_id = %s AND used = %s",
                (device_pk, False),
            )
        )
    if since is not None:
        sql, params = _sql(_key_changes(user.pk, since, head))
        parts.append((f"SELECT 5, 0, 0, mx, '', '' FROM ({sql}) AS changed", params))
        sql, params = _sql(_newly_sharing(user.pk, since, head))
        parts.append((f"SELECT 5, 0, 0, mxid, '', '' FROM ({sql}) AS joined", params))
        sql, params = _sql(_no_longer_sharing(user.pk, since, head))
        parts.append((f"SELECT 6, 0, 0, mxid, '', '' FROM ({sql}) AS gone", params))
    if not parts:
        return out
    sql = " UNION ALL ".join(f"SELECT * FROM ({p}) AS p{i}" for i, (p, _) in enumerate(parts))
    params: tuple[Any, ...] = sum((p for _, p in parts), ())
    with connection.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
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
