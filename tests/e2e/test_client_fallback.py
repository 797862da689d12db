"""Relay fallback: a peer whose advertised endpoint does not answer still gets whispers.

Bob advertises a UDP port where nothing answers (and does not dial out), so
Alice's dial times out and her node hands the whisper, sealed to Bob's box key,
to the lobby relay. Bob's ``RELAY`` handler sees exactly what the lobby
forwarded: the plaintext is not in it.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import pytest

from mesh import MessageType

from .conftest import ClientFactory, Deployment, Inbox, relayed

__all__: list[str] = []


@pytest.fixture
def dead_endpoint() -> Iterator[str]:
    """A loopback UDP port bound by a socket that never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        host, port = sock.getsockname()
        yield f"{host}:{port}"
    finally:
        sock.close()


async def test_whisper_falls_back_to_sealed_relay(
    deployment: Deployment, make_client: ClientFactory, dead_endpoint: str
) -> None:
    alice = await make_client("Alice")
    bob = await make_client("Bob", p2p_advertise=[dead_endpoint], p2p_auto_connect=False)
    whispers, envelopes = Inbox(), Inbox()
    bob.register_handler(MessageType.WHISPER, whispers)
    bob.register_handler(MessageType.RELAY, envelopes)
    secret = "the vault code is 7-1-9-swordfish"
    result = await alice.send_whisper("Bob", secret)
    assert result.path == "relay"
    (msg,) = await whispers.wait_for(1)
    assert msg.content == secret and msg.sender_name == "Alice"
    assert await relayed(deployment) >= 1
    seen = await envelopes.wait_for(1)
    for relay in seen:
        assert relay.sender_id == alice.character["id"]  # type: ignore[index]
        raw = base64.b64decode(relay.payload)
        assert b"swordfish" not in raw and secret.encode() not in raw
        assert "swordfish" not in relay.payload
    assert bob.node is not None and alice.node is not None
    assert bob.node.peer_id not in alice.node.peers


async def test_whisper_to_offline_character_is_peer_unreachable(
    make_client: ClientFactory,
) -> None:
    from protocol.errors import PeerUnreachableError

    alice = await make_client("Alice")
    with pytest.raises(PeerUnreachableError):
        await alice.send_whisper("Nobody", "hello?")
    with pytest.raises(PeerUnreachableError):
        await alice.send_whisper(987654, "hello?")
