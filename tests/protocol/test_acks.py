"""protocol.acks: each ACK's details as the lobby sends them, parsed back by the client."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import acks
from protocol.codec import deserialize, serialize
from protocol.errors import DecodeError, ProtocolError
from protocol.messages import AckMessage
from protocol.rest import parse_body

__all__: list[str] = []

# What the lobby's services sent before the models existed: the wire format they keep.
SENT: list[tuple[type[acks.AckDetails], dict[str, Any]]] = [
    (acks.MoveAck, {"location_id": 2, "previous_location_id": 1}),
    (acks.CombatStartAck, {"combat_id": "c0123456789ab", "seed": 2**47 + 5}),
    (acks.CombatActionAck, {"combat_id": "c0123456789ab", "round": 3}),
    (
        acks.ShardCaptureAck,
        {"shard_id": 4, "faction": "Crimson Covenant", "current_reality": "Shattered Veil"},
    ),
    (acks.PartyAck, {"party_id": "p1a2b3"}),
    (acks.PartyTargetAck, {"party_id": "p1a2b3", "target_id": 9}),
    (acks.TradeAck, {"trade_id": "t0a1b2c3d4e5f"}),
    (acks.TradeRequestAck, {"trade_id": "t0a1b2c3d4e5f", "target_id": 9}),
    (acks.TradeOfferAck, {"trade_id": "t0a1b2c3d4e5f", "version": 2}),
]


@pytest.mark.parametrize(("model", "sent"), SENT, ids=[m.__name__ for m, _ in SENT])
def test_ack_details_round_trip_through_the_wire(
    model: type[acks.AckDetails], sent: dict[str, Any]
) -> None:
    built = model(**sent)
    assert built.details() == sent
    assert list(built.details()) == list(sent)  # same keys, same order: same bytes
    wire = serialize(AckMessage(ref_id="0123456789abcdef0123456789abcdef", details=built.details()))
    received = deserialize(wire)
    assert isinstance(received, AckMessage)
    parsed = parse_body(model, received.details, what="the ACK")
    assert parsed == built
    for key, value in sent.items():  # reads like the dict it was
        assert parsed[key] == parsed.get(key) == getattr(parsed, key) == value
        assert key in parsed
    assert "nope" not in parsed and parsed.get("nope", 0) == 0
    with pytest.raises(KeyError):
        parsed["nope"]


def test_a_newer_lobby_may_add_keys() -> None:
    parsed = parse_body(
        acks.PartyTargetAck, {"party_id": "p1", "target_id": 3, "party_size": 2}, what="the ACK"
    )
    assert parsed == acks.PartyTargetAck(party_id="p1", target_id=3)
    assert "party_size" not in parsed


@pytest.mark.parametrize(
    ("model", "details", "field"),
    [
        (acks.MoveAck, {"previous_location_id": 1}, "location_id"),
        (acks.MoveAck, {"location_id": "north", "previous_location_id": 1}, "location_id"),
        (acks.TradeOfferAck, {"trade_id": "t1"}, "version"),
        (acks.PartyTargetAck, {"party_id": "p1"}, "target_id"),
        (acks.CombatStartAck, None, "body"),
    ],
)
def test_malformed_details_are_a_protocol_error_naming_the_field(
    model: type[acks.AckDetails], details: object, field: str
) -> None:
    with pytest.raises(DecodeError) as info:
        parse_body(model, details, what="the ACK to move")
    assert isinstance(info.value, ProtocolError)
    assert "the ACK to move" in str(info.value) and field in str(info.value)
    assert model.__name__ in str(info.value)
