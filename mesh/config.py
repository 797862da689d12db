"""Tunables of a mesh node, and which message types peers may exchange.

:class:`MeshConfig` is a plain dataclass: ``MeshConfig()`` is the defaults whatever
the environment. :meth:`MeshConfig.from_env` reads ``SHARDS_P2P_<FIELD>`` variables
over them (``SHARDS_P2P_MAX_CONNECTIONS=20``, ``SHARDS_P2P_ACK_TUNING=false``), as
the lobby reads ``SHARDS_*``; ``python -m mesh`` and a node or client built without
a config use it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocol.errors import MeshConfigError
from protocol.messages.base import MessageType

__all__ = [
    "ENV_PREFIX",
    "OTHER_P2P_VARIABLES",
    "PEER_MESSAGE_TYPES",
    "SAFE_DATAGRAM_PAYLOAD",
    "MeshConfig",
]

ENV_PREFIX = "SHARDS_P2P_"
"""Prefix of the environment variables :meth:`MeshConfig.from_env` reads."""

OTHER_P2P_VARIABLES = frozenset({"SHARDS_P2P_PORT"})
"""``SHARDS_P2P_*`` variables that are not tunables (read elsewhere: the node's port)."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

SAFE_DATAGRAM_PAYLOAD = 1100
"""Largest DATAGRAM payload the mesh sends: under the ~1170 bytes past which
aioquic 1.7.2 wedges its datagram queue (aioquic issue #294) at 1200-byte packets."""

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
    ``path_probe_interval``: an authenticated link that heard nothing for this long
    is sent a PING (and again each interval), so a path gone silent is told from a
    quiet one; ``path_silence``: a link that heard nothing for this long despite the
    probes is silent: its peer moves to its other link (TURN or direct) when that
    one works, and the driver hears of it (``PathChanged``, to open another path);
    ``spare_linger``: a TURN link kept beside a working direct one is closed after
    this long unused (its allocation may then be released);
    ``turn_after``: a peer the lobby paired us with that no direct path reaches this
    long after the pairing is reached through TURN (when the lobby names a TURN
    server; :mod:`mesh.client.turn`); ``turn_release_after``: a TURN allocation no
    datagram used for this long is released;
    ``redial_backoff``: after a failed dial, the next send uses the relay (or
    fails) instead of dialling again, for this long; ``reconnect_interval``: a peer
    we were connected to is redialled this often while messages to it wait (until
    their ``send_timeout``); ``tick_interval``: movement
    batching period; ``far_tick_divisor``: peers known to be in another location
    get our movement every Nth tick only; interest in our location
    (:func:`mesh.datagrams.tick_divisors`): the ``full_rate_peers`` nearest peers
    get every tick, the others every 2nd tick within ``rate_band`` world units,
    every 3rd within two bands and so on, at most every ``max_tick_divisor``-th
    (3: at 30 Hz no view of anyone in the area is more than 100 ms plus the trip
    behind; every 4th left a 150 ms target only 17 ms for network and loops, and
    the two fewer full-rate peers pay for it: a 32-peer area sends no more);
    ``movement_queue``: queued updates (drop oldest);
    ``max_pending_datagrams``: what aioquic may still hold per connection (drop
    oldest); ``max_datagram_payload``: byte limit of one movement batch;
    ``ack_tuning``: delay ACKs to ride on movement datagrams (without it nearly every
    movement datagram draws an ACK-only packet back: twice the packets),
    by up to ``ack_delay_ticks`` ticks (:attr:`ack_delay`): 2.5 covers peers that
    get every tick and every 2nd tick, so an ACK to them never needs a packet of
    its own; a peer that interest puts on every ``d``-th tick gets ``d - 1`` ticks
    more (its ACKs ride on the datagrams it gets, too). A pending ACK rides on a
    movement datagram once two packets wait for it (RFC 9000's "every second
    packet") or it is ``ack_piggyback_ticks`` ticks old (:attr:`ack_piggyback_age`):
    with movement both ways, every 2nd datagram carries an ACK (for two packets)
    instead of every one, which halves the ACK frames both sides write and the
    acknowledgement processing of the receiver, for loss detection about one tick
    later (RTT samples stay exact: an ACK's delay field counts from the newest
    packet); a peer that sends less often than we do is acknowledged once the ACK is
    that old. 1.25 leaves a late tick a quarter of a tick before the ACK delay would
    send the ACK in a packet of its own (at most ``ack_delay_ticks - 1``); 0
    piggybacks any pending ACK on every datagram. A younger one rides too when its
    delay would run out before the next datagram to that peer (expected after the
    same interval as since the last one): a game sending every 2nd tick would
    otherwise see a third of its ACKs, those it got just before its own update, go
    alone in a packet of their own. Only the ACKs of movement wait:
    once anything else arrived (stream data of a whisper, a PING), the pending ACK
    rides on the next datagram as at 0.

    Admission of new inbound connections (:mod:`mesh.gate`, before any connection
    state exists): while ``retry_threshold`` or more connections are handshaking
    (0: always), a new QUIC Initial is answered with a stateless Retry and only an
    Initial carrying a valid Retry token (bound to its source address and at most
    ``retry_token_lifetime`` old) opens a connection; a source (IPv4 address, IPv6
    /64) with ``max_handshakes_per_source`` connections opened without a token still
    handshaking must answer a Retry too, and it may have as many validated ones
    handshaking at a time; the table behind that limit keeps ``gate_sources`` sources.
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
    path_probe_interval: float = 1.0
    path_silence: float = 2.5
    spare_linger: float = 30.0
    turn_after: float = 3.0
    turn_release_after: float = 60.0
    tick_interval: float = 0.05
    far_tick_divisor: int = 4
    full_rate_peers: int = 4
    rate_band: float = 50.0
    max_tick_divisor: int = 3
    movement_queue: int = 64
    max_pending_datagrams: int = 4
    max_datagram_payload: int = SAFE_DATAGRAM_PAYLOAD
    ack_tuning: bool = True
    ack_delay_ticks: float = 2.5
    ack_piggyback_ticks: float = 1.25
    connection_id_length: int = 8
    # admission of new inbound connections (mesh.gate)
    retry_threshold: int = 16
    max_handshakes_per_source: int = 8
    retry_token_lifetime: float = 10.0
    gate_sources: int = 4096

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> MeshConfig:
        """The defaults, then ``SHARDS_P2P_<FIELD>`` variables of ``environ`` (default
        ``os.environ``), then ``overrides``.

        Numbers are decimal; booleans ``1/0``, ``true/false``, ``yes/no``, ``on/off``.
        Raises :class:`~protocol.errors.MeshConfigError` (one message naming every bad
        variable) for a value of the wrong type, a negative number, or a ``SHARDS_P2P_``
        variable that names no tunable (a typo would otherwise be silently ignored).
        """
        env = os.environ if environ is None else environ
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        problems: list[str] = []
        for key in sorted(env):
            if not key.startswith(ENV_PREFIX) or key in OTHER_P2P_VARIABLES:
                continue
            name = key[len(ENV_PREFIX) :].lower()
            if name not in fields:
                problems.append(f"{key}: no such mesh setting")
                continue
            try:
                values[name] = _parse(fields[name].type, env[key].strip())
            except ValueError as exc:
                problems.append(f"{key}={env[key]!r}: {exc}")
        if problems:
            raise MeshConfigError("invalid mesh settings: " + "; ".join(problems))
        return cls(**{**values, **overrides})

    @property
    def ack_delay(self) -> float:
        """The ACK delay (seconds) ``ack_tuning`` sets on each authenticated connection."""
        return self.ack_delay_ticks * self.tick_interval

    @property
    def ack_piggyback_age(self) -> float:
        """How old (seconds) a pending ACK must be to ride on a movement datagram."""
        return self.ack_piggyback_ticks * self.tick_interval


def _parse(kind: Any, text: str) -> bool | int | float:
    """``text`` as the field type ``kind`` (``"int"``, ``"float"``, ``"bool"``: the
    annotations are strings under ``from __future__ import annotations``)."""
    if kind in ("bool", bool):
        folded = text.lower()
        if folded in _TRUE | _FALSE:
            return folded in _TRUE
        raise ValueError("not a boolean (true/false)")
    if kind in ("int", int):
        try:
            number: int | float = int(text)
        except ValueError:
            raise ValueError("not a whole number") from None
    elif kind in ("float", float):
        try:
            number = float(text)
        except ValueError:
            raise ValueError("not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
    else:  # pragma: no cover - every MeshConfig field is a bool, int or float
        raise ValueError(f"cannot be set from the environment ({kind})")
    if number < 0:
        raise ValueError("must not be negative")
    return number
