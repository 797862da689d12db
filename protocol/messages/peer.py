"""Mesh messages: PEER_HELLO, PEER_PROOF, PEER_WELCOME, PEER_ACK, PEER_INFO, RELAY.

Binary values (keys, nonces, signatures, relay payloads) travel as base64 strings.
Handshake: each side sends PEER_HELLO (ticket or LAN group tag, a fresh challenge),
answers the other's challenge with PEER_PROOF, and admits the peer with PEER_WELCOME.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict, StringConstraints

from protocol.candidates import MAX_CANDIDATES, Candidate, PairingReason
from protocol.messages.base import (
    B64,
    AnyId,
    BaseMessage,
    Id,
    Level,
    MessageId,
    MessageType,
    Name,
    ShortText,
    Token,
)

__all__ = [
    "MAX_PEER_ENDPOINTS",
    "MAX_RELAY_PAYLOAD",
    "PeerAckMessage",
    "PeerHelloMessage",
    "PeerInfoMessage",
    "PeerProofMessage",
    "PeerWelcomeMessage",
    "RelayMessage",
]

MAX_PEER_ENDPOINTS = 8
"""Most ``PEER_INFO.endpoints`` (a 1.0 reader refuses more); ``candidates`` holds them all."""
MAX_RELAY_PAYLOAD = 48 * 1024
"""Longest base64 payload a RELAY carries (characters)."""

PairingId = Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
Endpoint = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=128)]
Capability = Annotated[str, Strict(), StringConstraints(pattern=r"^[a-z0-9_\-.]{1,32}$")]
Payload = Annotated[
    str,
    Strict(),
    StringConstraints(max_length=MAX_RELAY_PAYLOAD, pattern=r"^[A-Za-z0-9+/=_\-]*$"),
]


class PeerHelloMessage(BaseMessage):
    """The first message on a peer connection: who I am and a challenge for you."""

    type: Literal[MessageType.PEER_HELLO] = MessageType.PEER_HELLO
    node_id: AnyId
    challenge: B64
    ticket: Token | None = None
    public_key: B64 | None = None
    group_tag: B64 | None = None
    character_id: Id | None = None
    capabilities: list[Capability] = Field(default_factory=list, max_length=16)


class PeerProofMessage(BaseMessage):
    """The answer to the other side's challenge: a signature and/or a LAN group proof."""

    type: Literal[MessageType.PEER_PROOF] = MessageType.PEER_PROOF
    signature: B64 | None = None
    group_proof: B64 | None = None


class PeerWelcomeMessage(BaseMessage):
    """The handshake result: the peer is admitted (or refused, with a reason)."""

    type: Literal[MessageType.PEER_WELCOME] = MessageType.PEER_WELCOME
    node_id: AnyId
    accepted: bool = True
    character_id: Id | None = None
    character_name: Name | None = None
    reason: ShortText | None = None


class PeerAckMessage(BaseMessage):
    """Delivery acknowledgement of a reliable peer message (its ``message_id``)."""

    type: Literal[MessageType.PEER_ACK] = MessageType.PEER_ACK
    ref_id: MessageId


class PeerInfoMessage(BaseMessage):
    """One peer's directory entry: its signed ticket and where to reach it.

    The lobby sends it only to a peer it paired with this one (``pairing``
    says why: same location, same party, or a whisper), and when it pairs two
    peers it sends each the other's entry in the same step with the same
    ``pairing_id``, so both can start punching at once. ``candidates`` are the
    typed addresses (best first); ``endpoints`` repeats the best 8 as
    ``host:port`` for readers of protocol 1.0.
    """

    type: Literal[MessageType.PEER_INFO] = MessageType.PEER_INFO
    character_id: Id
    character_name: Name
    ticket: Token
    endpoints: list[Endpoint] = Field(default_factory=list, max_length=MAX_PEER_ENDPOINTS)
    faction: Name | None = None
    location_id: Id | None = None
    node_id: AnyId | None = None
    public_key: B64 | None = None
    online: bool = True
    level: Level | None = None
    candidates: list[Candidate] = Field(default_factory=list, max_length=MAX_CANDIDATES)
    pairing: PairingReason | None = None
    pairing_id: PairingId | None = None


class RelayMessage(BaseMessage):
    """An opaque, addressed envelope forwarded by the lobby when no direct path exists.

    ``payload`` is base64 (normally a sealed peer message); the lobby sets
    ``sender_id`` from the session, never from the sender's claim.
    """

    type: Literal[MessageType.RELAY] = MessageType.RELAY
    target_id: Id
    sender_id: Id | None = None
    payload: Payload
