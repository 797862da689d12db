"""Events the sans-I/O core (:class:`mesh.core.MeshCore`) reports to its driver."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.auth import PeerIdentity
from mesh.paths import Path, Route
from protocol.errors import MeshError
from protocol.messages.base import BaseMessage
from protocol.messages.location import PositionUpdateMessage

__all__ = [
    "CoreEvent",
    "DialFailed",
    "MessageDelivered",
    "Path",
    "PathChanged",
    "PeerConnected",
    "PeerDisconnected",
    "PositionReceived",
    "RelayRequest",
    "SendSettled",
]


@dataclass(frozen=True, slots=True)
class PeerConnected:
    """A peer is authenticated and reachable directly.

    Once per peer going up, not per connection; again only for a dial that
    ended on the connection already there (``dial_id`` set, ``address`` and
    ``outbound`` of the surviving connection).
    """

    identity: PeerIdentity
    address: Route
    outbound: bool
    dial_id: int | None


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    """The direct connection to an authenticated peer ended (it left, timed out, was evicted)."""

    identity: PeerIdentity
    code: int
    reason: str
    location_id: int | None
    to_location_id: int | None = None


@dataclass(frozen=True, slots=True)
class DialFailed:
    """A dial did not produce an authenticated connection (timeout, refused, handshake)."""

    dial_id: int
    peer_id: str | None
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class MessageDelivered:
    """A reliable message from an authenticated peer, sender fields already overwritten."""

    identity: PeerIdentity
    message: BaseMessage
    path: Path


@dataclass(frozen=True, slots=True)
class PositionReceived:
    """A movement update that won newest-wins."""

    identity: PeerIdentity
    update: PositionUpdateMessage


@dataclass(frozen=True, slots=True)
class SendSettled:
    """A reliable send finished: acked (``error`` None, ``path`` of the ack, which is the
    path the acknowledged copy came by) or failed."""

    handle: int
    path: Path | None
    error: MeshError | None


@dataclass(frozen=True, slots=True)
class PathChanged:
    """What carries a connected peer changed: another link took over (``path`` is its
    path kind), or the link in use went silent with no other working link
    (``silent``; the driver may open another path: TURN), or came back (not ``silent``)."""

    identity: PeerIdentity
    path: Path
    silent: bool


@dataclass(frozen=True, slots=True)
class RelayRequest:
    """Bytes to hand to the relay transport, addressed to a character / peer."""

    character_id: int
    peer_id: str
    data: bytes


CoreEvent = (
    PeerConnected
    | PeerDisconnected
    | DialFailed
    | MessageDelivered
    | PositionReceived
    | SendSettled
    | RelayRequest
    | PathChanged
)
