"""Tunables of a mesh node, and which message types peers may exchange."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.movement import SAFE_DATAGRAM_PAYLOAD
from protocol.messages.base import MessageType

__all__ = ["PEER_MESSAGE_TYPES", "MeshConfig"]

PEER_MESSAGE_TYPES = frozenset(
    {
        MessageType.WHISPER,
        MessageType.PARTY_CHAT,
        MessageType.CHAT,
        MessageType.MOVE,
        MessageType.HEARTBEAT,
    }
)
"""Message types a peer may send on the reliable channel."""


@dataclass(slots=True)
class MeshConfig:
    """Tunables of a node (seconds and counts).

    ``max_connections``: direct peers kept (area of interest decides who goes);
    ``disconnect_on_leave``: a peer seen moving out of our location is disconnected
    (and announced as PLAYER_LEFT_AREA; messages to it reconnect on demand);
    ``max_handshakes``: connections not yet authenticated; ``idle_timeout``: QUIC
    idle timeout; ``keepalive_interval``: PING period on authenticated connections;
    ``dial_timeout``: QUIC + peer handshake must finish within it;
    ``send_timeout``: a reliable message not acknowledged by then fails with
    ``PeerUnreachableError``; ``direct_ack_timeout``: unacknowledged that long on the
    direct path, a message is also sent through the relay (when there is one);
    ``relay_resend_interval``: relay copies repeat until acknowledged;
    ``redial_backoff``: after a failed dial, the next send uses the relay (or
    fails) instead of dialling again, for this long; ``reconnect_interval``: a peer
    we were connected to is redialled this often while messages to it wait (until
    their ``send_timeout``); ``tick_interval``: movement
    batching period; ``far_tick_divisor``: peers known to be in another location
    get our movement every Nth tick only; interest in our location
    (:func:`mesh.movement.tick_divisors`): the ``full_rate_peers`` nearest peers
    get every tick, the others every 2nd tick within ``rate_band`` world units,
    every 3rd within two bands and so on, at most every ``max_tick_divisor``-th;
    ``movement_queue``: queued updates (drop oldest);
    ``max_pending_datagrams``: what aioquic may still hold per connection (drop
    oldest); ``max_datagram_payload``: byte limit of one movement batch;
    ``ack_tuning``: delay ACKs to ride on movement datagrams (docs/architecture.md, "QUIC facts"),
    by up to ``ack_delay_ticks`` ticks (:attr:`ack_delay`): 2.5 covers peers that
    get every tick and every 2nd tick, so an ACK to them never needs a packet of
    its own.
    """

    max_connections: int = 10
    disconnect_on_leave: bool = True
    max_handshakes: int = 64
    idle_timeout: float = 30.0
    keepalive_interval: float = 5.0
    dial_timeout: float = 5.0
    send_timeout: float = 15.0
    relay_resend_interval: float = 2.0
    redial_backoff: float = 30.0
    reconnect_interval: float = 2.0
    direct_ack_timeout: float = 3.0
    tick_interval: float = 0.05
    far_tick_divisor: int = 4
    full_rate_peers: int = 6
    rate_band: float = 50.0
    max_tick_divisor: int = 4
    movement_queue: int = 64
    max_pending_datagrams: int = 4
    max_datagram_payload: int = SAFE_DATAGRAM_PAYLOAD
    ack_tuning: bool = True
    ack_delay_ticks: float = 2.5
    connection_id_length: int = 8

    @property
    def ack_delay(self) -> float:
        """The ACK delay (seconds) ``ack_tuning`` sets on each authenticated connection."""
        return self.ack_delay_ticks * self.tick_interval
