"""The seed's "Test the Protocol" snippet, verbatim but for the import line."""

from __future__ import annotations

import protocol
from protocol import create_chat_message

__all__: list[str] = []


def test_seed_protocol_snippet() -> None:
    # Create message
    msg = create_chat_message(sender_id=1, sender_name="TestUser", content="Hello, world!")

    # Serialize
    json_str = protocol.serialize(msg)
    print(json_str)

    # Deserialize
    parsed = protocol.deserialize(json_str)
    assert parsed.content == "Hello, world!"


def test_seed_factories_exist_with_seed_arguments() -> None:
    update = protocol.create_character_update(
        character_id=1,
        character_name="Aria",
        location_id=5,
        health=80,
        max_health=100,
        level=3,
    )
    assert protocol.deserialize(protocol.serialize(update)) == update
    shard = protocol.create_shard_captured_message(
        shard_id=1,
        shard_name="Phoenix Flame",
        character_id=7,
        character_name="Aria",
        faction="Crimson Covenant",
    )
    parsed = protocol.deserialize(protocol.serialize(shard))
    assert parsed == shard
    assert isinstance(parsed, protocol.ShardCapturedMessage)
    assert parsed.shard_name == "Phoenix Flame" and parsed.faction == "Crimson Covenant"
