"""Connection quality per peer: the path in use, round trip, loss and traffic (a snapshot).

What GameNetworkingSockets users read with ``GetConnectionRealTimeStatus``:
:meth:`mesh.node.PeerNode.connection_quality` (and ``connection_qualities``
for every connected peer) returns a :class:`ConnectionQuality`, built here
from the peer's direct link (:class:`mesh.link.Link`: aioquic's RTT estimates
and loss counter, datagram bytes) and what reliable delivery knows of the
relay (:class:`RelayTraffic`). Sans-I/O: the caller passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh import _quicshim
from mesh.auth import PeerIdentity
from mesh.link import Link
from mesh.paths import Path, Route

__all__ = ["ConnectionQuality", "RelayTraffic", "connection_quality"]


@dataclass(slots=True)
class RelayTraffic:
    """Sealed relay envelopes exchanged with one peer since the node started."""

    bytes_sent: int = 0
    bytes_received: int = 0
    last_received: float | None = None
    """When the last valid envelope from the peer arrived (the core's clock)."""


@dataclass(frozen=True, slots=True)
class ConnectionQuality:
    """How one connected peer is reached right now.

    ``path`` is the path reliable messages to the peer travel now: ``"relay"``
    while one of them is being relayed (its link, if any, did not deliver it
    in time) or when the peer is reached only through the relay, else the
    path of the QUIC link that carries the peer: ``"direct"``, or ``"turn"``
    (through a TURN server's relayed address). The link figures describe that
    QUIC connection (they start again at zero on a new connection) and are
    None or zero without one; the relay figures count since the node started.
    """

    peer_id: str
    character_id: int
    character_name: str
    path: Path
    address: Route | None
    """Where the link's datagrams go (a :class:`~mesh.paths.TurnRoute` through our own
    TURN allocation; None: no link)."""
    rtt: float | None
    """Smoothed round-trip time of the link, seconds (None: no sample yet,
    or no link; the relay reports no timing)."""
    rtt_min: float | None
    """Smallest round-trip sample of the direct link, seconds."""
    rtt_variance: float | None
    """Mean deviation of the direct link's round-trip samples, seconds."""
    loss: float | None
    """``packets_lost / packets_sent`` on the direct link (None: nothing sent yet)."""
    packets_sent: int
    """QUIC packets sent on the direct link."""
    packets_lost: int
    """Of those, how many QUIC's loss recovery declared lost (and retransmitted what
    they carried); a path gone silent one way shows here, and in ``silent_for``."""
    bytes_sent: int
    """UDP payload bytes sent on the direct link."""
    bytes_received: int
    """UDP payload bytes received on the direct link."""
    silent_for: float | None
    """Seconds since a datagram last arrived on the direct link (None: no direct link)."""
    relay_bytes_sent: int
    """Relay envelope bytes sent to the peer."""
    relay_bytes_received: int
    """Relay envelope bytes received from the peer."""
    pending_reliable: int
    """Reliable messages to the peer not acknowledged yet."""


def connection_quality(
    identity: PeerIdentity,
    path: Path,
    link: Link | None,
    relay: RelayTraffic | None,
    pending: int,
    now: float,
) -> ConnectionQuality:
    """The snapshot of one peer reached by ``path``, over ``link`` when it has one."""
    relay = relay or RelayTraffic()
    rtt = _quicshim.rtt_stats(link.quic) if link is not None else None
    sent = _quicshim.packets_sent(link.quic) if link is not None else 0
    lost = link.losses.lost if link is not None else 0
    return ConnectionQuality(
        peer_id=identity.peer_id,
        character_id=identity.character_id,
        character_name=identity.character_name,
        path=path,
        address=link.addr if link is not None else None,
        rtt=rtt.smoothed if rtt is not None else None,
        rtt_min=rtt.minimum if rtt is not None else None,
        rtt_variance=rtt.variance if rtt is not None else None,
        loss=lost / sent if sent else None,
        packets_sent=sent,
        packets_lost=lost,
        bytes_sent=link.bytes_sent if link is not None else 0,
        bytes_received=link.bytes_received if link is not None else 0,
        silent_for=max(now - link.last_rx, 0.0) if link is not None else None,
        relay_bytes_sent=relay.bytes_sent,
        relay_bytes_received=relay.bytes_received,
        pending_reliable=pending,
    )
