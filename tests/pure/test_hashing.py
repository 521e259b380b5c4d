"""Content hashes, reference hashes, event IDs and v12 room IDs (events/hashing.py).

Known vectors:
* the spec's "Cryptographic Test Vectors" (appendices): two content hashes and, with the given
  ed25519 seed, the signatures over the redacted events (which pins redaction + canonical JSON);
* real events from the public federation (v10, v11, v12 rooms, one of them already redacted) with
  the event IDs their servers gave them, as collected in mautrix-go's federation PDU test data.
  The v12 create event's ID gives its room's ID, which the v12 member event carries as room_id.
"""

from __future__ import annotations

import copy
import json

import pytest

from events.hashing import (
    canonical_json,
    content_hash,
    event_id,
    reference_hash,
    room_id_for_create_event,
    with_content_hash,
)
from events.redaction import redact_pdu
from events.room_versions import ROOM_V10, ROOM_V11, ROOM_V12, ROOM_VERSIONS, RoomVersion

# --- the spec's appendix vectors ---------------------------------------------------------------------

SPEC_MINIMAL_EVENT = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
SPEC_MESSAGE_EVENT = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}
SPEC_SIGNING_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"

SPEC_VECTORS = [
    pytest.param(
        SPEC_MINIMAL_EVENT,
        "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos",
        "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg",
        id="minimal-event",
    ),
    pytest.param(
        SPEC_MESSAGE_EVENT,
        "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g",
        "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA",
        id="redactable-message",
    ),
]


@pytest.mark.parametrize(("event", "expected_hash", "signature"), SPEC_VECTORS)
def test_spec_content_hash_vectors(event: dict, expected_hash: str, signature: str) -> None:
    assert content_hash(event) == expected_hash


@pytest.mark.parametrize(("event", "expected_hash", "signature"), SPEC_VECTORS)
def test_spec_signature_vectors_over_redacted_event(event: dict, expected_hash: str, signature: str) -> None:
    # The spec's vectors predate v11 (they keep ``origin``), so redact with the v9 rules (room v10);
    # signing covers the redacted event without ``signatures`` and ``unsigned``.
    ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    from unpaddedbase64 import decode_base64, encode_base64

    key = ed25519.Ed25519PrivateKey.from_private_bytes(decode_base64(SPEC_SIGNING_SEED))
    signed = redact_pdu(with_content_hash(event), ROOM_V10)
    signed.pop("signatures")
    assert encode_base64(key.sign(canonical_json(signed))) == signature


# --- real events from the federation -----------------------------------------------------------------

REAL_V10_CREATE = r"""{"auth_events":[],"content":{"creator":"@creme:envs.net","predecessor":{"event_id":"$BxYNisKcyBDhPLiVC06t18qhv7wsT72MzMCqn5vRhfY","room_id":"!tEyFYiMHhwJlDXTxwf:envs.net"},"room_version":"10"},"depth":1,"hashes":{"sha256":"us3TrsIjBWpwbm+k3F9fUVnz9GIuhnb+LcaY47fWwUI"},"origin":"envs.net","origin_server_ts":1664394769527,"prev_events":[],"room_id":"!UzZHbJYcgggctGnlzr:envs.net","sender":"@creme:envs.net","state_key":"","type":"m.room.create","signatures":{"envs.net":{"ed25519:a_zIqy":"0g3FDaD1e5BekJYW2sR7dgxuKoZshrf8P067c9+jmH6frsWr2Ua86Ax08CFa/n46L8uvV2SGofP8iiVYgXCRBg"}},"unsigned":{"age":2060}}"""
REAL_V10_MEMBER = r"""{"auth_events":["$HQC4hWaioLKVbMH94qKbfb3UnL4ocql2vi-VdUYI48I","$R9FUDgNAp9ms7b6ASunZOIkpqmsIRq_ROrNEznu62fs","$kEPF8Aj87EzRmFPriu2zdyEY0rY15XSqywTYVLUUlCA","$tn1FZUI_YUpfTr_a3Y_r8kC3inliIZZratzg0UsNdCQ"],"content":{"avatar_url":"mxc://maunium.net/jdlSfvudiMSmcRrleeiYjjFO","displayname":"tulir","membership":"join"},"depth":182,"hashes":{"sha256":"0HscBc921QV2dxK2qY7qrnyoAgfxBM7kKvqAXlEk+GE"},"origin":"maunium.net","origin_server_ts":1665402609039,"prev_events":["$R9FUDgNAp9ms7b6ASunZOIkpqmsIRq_ROrNEznu62fs"],"room_id":"!UzZHbJYcgggctGnlzr:envs.net","sender":"@tulir:maunium.net","state_key":"@tulir:maunium.net","type":"m.room.member","signatures":{"maunium.net":{"ed25519:a_xxeS":"lkOW0FSJ8MJ0wZpdwLH1Uf6FSl2q9/u6KthRIlM0CwHDJG4sIZ9DrMA8BdU8L/PWoDS/CoDUlLanDh99SplgBw"}},"unsigned":{"age_ts":1665402609039,"replaces_state":"$R9FUDgNAp9ms7b6ASunZOIkpqmsIRq_ROrNEznu62fs"}}"""
REAL_V11_MESSAGE = r"""{"auth_events":["$L8Ak6A939llTRIsZrytMlLDXQhI4uLEjx-wb1zSg-Bw","$QJmr7mmGeXGD4Tof0ZYSPW2oRGklseyHTKtZXnF-YNM","$7bkKK_Z-cGQ6Ae4HXWGBwXyZi3YjC6rIcQzGfVyl3Eo"],"content":{"body":"meow","com.beeper.linkpreviews":[],"m.mentions":{},"msgtype":"m.text"},"depth":3212,"hashes":{"sha256":"K549YdTnv62Jn84Y7sS5ZN3+AdmhleZHbenbhUpR2R8"},"origin_server_ts":1754242687127,"prev_events":["$DAhJg4jVsqk5FRatE2hbT1dSA8D2ASy5DbjEHIMSHwY"],"room_id":"!offtopic-2:continuwuity.org","sender":"@tulir:maunium.net","type":"m.room.message","signatures":{"maunium.net":{"ed25519:a_xxeS":"SkzZdZ+rH22kzCBBIAErTdB0Vg6vkFmzvwjlOarGul72EnufgtE/tJcd3a8szAdK7f1ZovRyQxDgVm/Ib2u0Aw"}},"unsigned":{"age_ts":1754242687146}}"""
REAL_V11_REDACTED_MEMBER = r"""{"auth_events":["$9f12-_stoY07BOTmyguE1QlqvghLBh9Rk6PWRLoZn_M","$IP8hyjBkIDREVadyv0fPCGAW9IXGNllaZyxqQwiY_tA","$7dN5J8EveliaPkX6_QSejl4GQtem4oieavgALMeWZyE"],"content":{"membership":"join"},"depth":96978,"hashes":{"sha256":"APYA/aj3u+P0EwNaEofuSIlfqY3cK3lBz6RkwHX+Zak"},"origin_server_ts":1755664164485,"prev_events":["$XBN9W5Ll8VEH3eYqJaemxCBTDdy0hZB0sWpmyoUp93c"],"room_id":"!main-1:continuwuity.org","sender":"@6a19abdd4766:nova.astraltech.org","state_key":"@6a19abdd4766:nova.astraltech.org","type":"m.room.member","signatures":{"continuwuity.org":{"ed25519:PwHlNsFu":"+b/Fp2vWnC+Z2lI3GnCu7ZHdo3iWNDZ2AJqMoU9owMtLBPMxs4dVIsJXvaFq0ryawsgwDwKZ7f4xaFUNARJSDg"},"nova.astraltech.org":{"ed25519:a_afpo":"pXIngyxKukCPR7WOIIy8FTZxQ5L2dLiou5Oc8XS4WyY4YzJuckQzOaToigLLZxamfbN/jXbO+XUizpRpYccDAA"}},"unsigned":{}}"""
REAL_V12_CREATE = r"""{"auth_events":[],"content":{"fi.mau.randomness":"AAXZ6aIc","predecessor":{"room_id":"!#test/room\nversion <u>11</u>, with @\ud83d\udc08\ufe0f:maunium.net"},"room_version":"12"},"depth":1,"hashes":{"sha256":"d3L1M3KUdyIKWcShyW6grUoJ8GOjCdSIEvQrDVHSpE8"},"origin_server_ts":1754940000000,"prev_events":[],"sender":"@tulir:maunium.net","state_key":"","type":"m.room.create","signatures":{"maunium.net":{"ed25519:a_xxeS":"ebjIRpzToc82cjb/RGY+VUzZic0yeRZrjctgx0SUTJxkprXn3/i1KdiYULfl/aD0cUJ5eL8gLakOSk2glm+sBw"}},"unsigned":{"age_ts":1754939139045}}"""
REAL_V12_MEMBER = r"""{"auth_events":[],"content":{"avatar_url":"mxc://maunium.net/jdlSfvudiMSmcRrleeiYjjFO","displayname":"tulir","membership":"join"},"depth":2,"hashes":{"sha256":"IebdOBYaaWYIx2zq/lkVCnjWIXTLk1g+vgFpJMgd2/E"},"origin_server_ts":1754939139117,"prev_events":["$mauT12AzsoqxV7Abvy_ApA-HNPK1LcT4GbP70_AOPyQ"],"room_id":"!mauT12AzsoqxV7Abvy_ApA-HNPK1LcT4GbP70_AOPyQ","sender":"@tulir:maunium.net","state_key":"@tulir:maunium.net","type":"m.room.member","signatures":{"maunium.net":{"ed25519:a_xxeS":"rFCgF2hmavdm6+P6/f7rmuOdoSOmELFaH3JdWjgBLZXS2z51Ma7fa2v2+BkAH1FvBo9FLhvEoFVM4WbNQLXtAA"}},"unsigned":{"age_ts":1754939139117}}"""
REAL_V12_MESSAGE = r"""{"auth_events":["$gCzdJUVV93Qory0x7p_PLG5UUiDjPJNe1H12qbHTuFA","$hyeL_nU_L3tsZ2dtZZpAHk0Skv-PqFQIipuII_By584"],"content":{"body":"meow","com.beeper.linkpreviews":[],"m.mentions":{},"msgtype":"m.text"},"depth":122,"hashes":{"sha256":"IQ0zlc+PXeEs6R3JvRkW3xTPV3zlGKSSd3x07KXGjzs"},"origin_server_ts":1755384351627,"prev_events":["$gCzdJUVV93Qory0x7p_PLG5UUiDjPJNe1H12qbHTuFA"],"room_id":"!mauT12AzsoqxV7Abvy_ApA-HNPK1LcT4GbP70_AOPyQ","sender":"@tulir_test:maunium.net","type":"m.room.message","signatures":{"maunium.net":{"ed25519:a_xxeS":"0GDMddL2k7gF4V1VU8sL3wTfhAIzAu5iVH5jeavZ2VEg3J9/tHLWXAOn2tzkLaMRWl0/XpINT2YlH/rd2U21Ag"}},"unsigned":{"age_ts":1755384351627}}"""

REAL_VECTORS = [
    pytest.param(
        "10", REAL_V10_CREATE, "$tn1FZUI_YUpfTr_a3Y_r8kC3inliIZZratzg0UsNdCQ", True, id="v10-create"
    ),
    pytest.param(
        "10", REAL_V10_MEMBER, "$--ilpwnsHaEdHrwiMrZNu5xHP6TthWG0FIXMHnlHCcs", True, id="v10-member"
    ),
    pytest.param(
        "11", REAL_V11_MESSAGE, "$qkWfTL7_l3oRZO2CItW8-Q0yAmi_l_1ua629ZDqponE", True, id="v11-message"
    ),
    pytest.param(
        "11",
        REAL_V11_REDACTED_MEMBER,
        "$r6d9m125YWG28-Tln47bWtm6Jlv4mcSUWJTHijBlXLQ",
        False,
        id="v11-redacted-member",
    ),
    pytest.param(
        "12", REAL_V12_CREATE, "$mauT12AzsoqxV7Abvy_ApA-HNPK1LcT4GbP70_AOPyQ", True, id="v12-create"
    ),
    pytest.param(
        "12", REAL_V12_MEMBER, "$accqGxfvhBvMP4Sf6P7t3WgnaJK6UbonO2ZmwqSE5Sg", True, id="v12-creator-join"
    ),
    pytest.param(
        "12", REAL_V12_MESSAGE, "$xmP-wZfpannuHG-Akogi6c4YvqxChMtdyYbUMGOrMWc", True, id="v12-message"
    ),
]


@pytest.mark.parametrize(("version_id", "raw", "expected_id", "full_content"), REAL_VECTORS)
def test_real_event_ids(version_id: str, raw: str, expected_id: str, full_content: bool) -> None:
    pdu = json.loads(raw)
    assert event_id(pdu, ROOM_VERSIONS[version_id]) == expected_id
    # A redacted copy hashes to a different content hash, but keeps its ID (the reference hash).
    assert (content_hash(pdu) == pdu["hashes"]["sha256"]) is full_content
    assert event_id(redact_pdu(pdu, ROOM_VERSIONS[version_id]), ROOM_VERSIONS[version_id]) == expected_id


def test_real_v12_room_id_is_create_event_hash() -> None:
    create = json.loads(REAL_V12_CREATE)
    room_id = room_id_for_create_event(create, ROOM_V12)
    assert room_id == "!mauT12AzsoqxV7Abvy_ApA-HNPK1LcT4GbP70_AOPyQ"
    assert room_id == json.loads(REAL_V12_MEMBER)["room_id"]
    assert room_id[1:] == event_id(create, ROOM_V12)[1:]


@pytest.mark.parametrize(
    ("pdu", "version"),
    [
        pytest.param(json.loads(REAL_V12_CREATE), ROOM_V11, id="v11-room-ids-not-hashes"),
        pytest.param({**json.loads(REAL_V12_CREATE), "type": "m.room.message"}, ROOM_V12, id="not-a-create"),
        pytest.param({**json.loads(REAL_V12_CREATE), "room_id": "!x"}, ROOM_V12, id="create-with-room-id"),
    ],
)
def test_room_id_for_create_event_rejects(pdu: dict, version: RoomVersion) -> None:
    with pytest.raises(ValueError):
        room_id_for_create_event(pdu, version)


# --- properties ------------------------------------------------------------------------------------------


def _pdu() -> dict:
    return with_content_hash(
        {
            "type": "m.room.message",
            "room_id": "!r:hs",
            "sender": "@bob:hs",
            "content": {"msgtype": "m.text", "body": "hello"},
            "depth": 4,
            "prev_events": ["$p"],
            "auth_events": ["$a"],
            "origin_server_ts": 1700000000000,
        }
    )


@pytest.mark.parametrize("version", [ROOM_V10, ROOM_V11, ROOM_V12], ids=["10", "11", "12"])
def test_event_id_properties(version: RoomVersion) -> None:
    pdu = _pdu()
    original = event_id(pdu, version)
    assert original.startswith("$") and len(original) == 44
    assert "+" not in original and "/" not in original and "=" not in original

    # unsigned and signatures are outside both hashes.
    assert event_id({**pdu, "unsigned": {"age": 5}}, version) == original
    assert event_id({**pdu, "signatures": {"hs": {"ed25519:1": "x"}}}, version) == original
    assert content_hash({**pdu, "unsigned": {"age": 5}}) == pdu["hashes"]["sha256"]

    # A non-preserved content key: the content hash changes; the reference hash only changes
    # through ``hashes`` (which covers the content) once the content hash is recomputed.
    edited = copy.deepcopy(pdu)
    edited["content"]["body"] = "edited"
    assert content_hash(edited) != pdu["hashes"]["sha256"]
    assert reference_hash(edited, version) == reference_hash(pdu, version)
    assert event_id(with_content_hash(edited), version) != original

    # A preserved key (here a top-level one) changes the reference hash directly.
    assert event_id({**pdu, "depth": 5}, version) != original
    # A key outside the redaction algorithm's list doesn't.
    assert event_id({**pdu, "custom": 1}, version) == original


def test_with_content_hash_ignores_old_hashes_and_does_not_mutate() -> None:
    pdu = {"type": "X", "content": {}, "hashes": {"sha256": "stale"}}
    hashed = with_content_hash(pdu)
    assert hashed["hashes"] == {"sha256": content_hash({"type": "X", "content": {}})}
    assert pdu["hashes"] == {"sha256": "stale"}


def test_canonical_json() -> None:
    assert (
        canonical_json({"b": 1, "a": {"d": [1, 2], "c": "é"}}) == '{"a":{"c":"é","d":[1,2]},"b":1}'.encode()
    )


def test_reference_hash_is_raw_sha256() -> None:
    assert len(reference_hash(_pdu(), ROOM_V11)) == 32
