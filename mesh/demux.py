"""Who gets each datagram of the node's one UDP socket: the QUIC core, STUN or TURN (sans-I/O).

The node's single UDP socket carries its QUIC connections, its STUN Binding
transactions (learning the server-reflexive address) and, when a relay is
allocated, its TURN traffic. :func:`route` makes the decision for one datagram,
in this order:

1. from the address of the configured TURN server: :attr:`Route.TURN` (its
   answers, Data indications and ChannelData all start differently, and
   ChannelData's first byte, 64-79, would otherwise read as a QUIC short header);
2. first byte 0-3 (RFC 7983): :attr:`Route.STUN`;
3. first byte 64-255: :attr:`Route.QUIC` (short headers 64-127, long 128-255);
4. anything else (empty, 4-63: DTLS, ZRTP, nothing we speak): :attr:`Route.DROP`.

:class:`SocketClients` holds the non-QUIC users of the socket, a
:class:`~mesh.stun_client.StunClient` and an optional
:class:`~mesh.turn_client.TurnClient`, and drives them through the same calls as
the core (``receive_datagram``, ``datagrams_to_send``, ``get_timer``,
``handle_timer``, ``next_event``), so the asyncio driver flushes and times them
in the pass it already makes for the core. What it does not take is the core's.
"""

from __future__ import annotations

import enum
from typing import Protocol

from mesh.stun_client import StunClient, StunEvent
from mesh.stun_transactions import same_address
from mesh.turn_client import TurnEvent
from protocol.stun import Address

__all__ = ["DEMUX_STAT_NAMES", "Route", "SocketClients", "SocketEvent", "TurnUser", "route"]

SocketEvent = StunEvent | TurnEvent
"""What the STUN and TURN clients of the socket report."""

DEMUX_STAT_NAMES = ("stun_unmatched", "demux_dropped")
"""``stun_unmatched``: STUN datagrams that answered none of our transactions (a stray or
late answer, a Binding request: the node answers none); ``demux_dropped``: datagrams
of no protocol we speak."""


class TurnUser(Protocol):
    """What shares the socket for a TURN server: a :class:`~mesh.turn_client.TurnClient`,
    or the node's :class:`~mesh.turn_path.TurnPath` around one."""

    @property
    def server(self) -> Address: ...

    def receive_datagram(self, data: bytes, source: Address, now: float) -> bool: ...

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> TurnEvent | None: ...


class Route(enum.Enum):
    """Where one datagram of the socket goes (see :func:`route`)."""

    TURN = "turn"
    STUN = "stun"
    QUIC = "quic"
    DROP = "drop"


def route(data: bytes, source: Address, turn_server: Address | None) -> Route:
    """The destination of ``data`` from ``source`` (the module docstring's order)."""
    if turn_server is not None and same_address(turn_server, (source[0], source[1])):
        return Route.TURN
    if not data:
        return Route.DROP
    first = data[0]
    if first >= 64:
        return Route.QUIC
    if first <= 3:
        return Route.STUN
    return Route.DROP


class SocketClients:
    """The STUN client and the optional TURN client sharing the node's socket with QUIC.

    ``stun``: the Binding client (always there; idle until asked);
    :attr:`turn`: the relay allocation's client once one is attached.
    """

    def __init__(self, stun: StunClient) -> None:
        self.stun = stun
        self._turn: TurnUser | None = None
        self.turn_server: Address | None = None
        """The TURN client's server (None: no TURN client). Read it; attaching a client
        (:attr:`turn`) sets it. While it is None, a datagram whose first byte is 64 or
        more is QUIC whoever sent it (:func:`route`): the driver hands those to the core
        without a :meth:`receive_datagram` call."""
        self.stats: dict[str, int] = dict.fromkeys(DEMUX_STAT_NAMES, 0)
        self.idle = stun.idle
        """No TURN client and an idle STUN client: :meth:`datagrams_to_send`,
        :meth:`get_timer` and :meth:`next_event` would all return nothing, so the driver
        may skip them. An attribute kept current when either changes (the STUN client
        tells: :attr:`~mesh.stun_client.StunClient.on_idle_change`), as the node reads
        it on every flush."""
        stun.on_idle_change = self._update_idle

    @property
    def turn(self) -> TurnUser | None:
        """The TURN client whose server's datagrams are routed to it (None: no relay)."""
        return self._turn

    @turn.setter
    def turn(self, client: TurnUser | None) -> None:
        self._turn = client
        self.turn_server = client.server if client is not None else None
        self._update_idle()

    def receive_datagram(self, data: bytes, source: Address, now: float) -> bool:
        """Take ``data`` if it is not the core's; False means: hand it to the QUIC core.

        Datagrams the STUN or TURN client does not recognise are dropped (counted),
        never passed on: a STUN-looking datagram is no QUIC packet.
        """
        turn_server = self.turn_server
        if data and data[0] >= 64 and (turn_server is None or source[1] != turn_server[1]):
            return False  # the hot path: movement and chat, from anyone but the TURN server
        kind = route(data, source, turn_server)
        if kind is Route.QUIC:
            return False
        if kind is Route.TURN:
            assert self._turn is not None  # noqa: S101 - the server is known only with a client
            self._turn.receive_datagram(data, (source[0], source[1]), now)
        elif kind is Route.STUN:
            if not self.stun.receive_datagram(data, (source[0], source[1]), now):
                self.stats["stun_unmatched"] += 1
        else:
            self.stats["demux_dropped"] += 1
        return True

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """What the STUN and TURN clients want sent now, with destinations."""
        out = self.stun.datagrams_to_send(now)
        if self._turn is not None:
            out.extend(self._turn.datagrams_to_send(now))
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next (None: nothing in flight)."""
        stun_at = self.stun.get_timer()
        turn_at = self._turn.get_timer() if self._turn is not None else None
        if stun_at is None:
            return turn_at
        return stun_at if turn_at is None else min(stun_at, turn_at)

    def handle_timer(self, now: float) -> None:
        """Retransmit, refresh and fail what is due in both clients."""
        if (at := self.stun.get_timer()) is not None and at <= now:
            self.stun.handle_timer(now)
        if self._turn is not None and (at := self._turn.get_timer()) is not None and at <= now:
            self._turn.handle_timer(now)

    def next_event(self) -> SocketEvent | None:
        """The next STUN or TURN outcome (STUN first), or None."""
        if (event := self.stun.next_event()) is not None:
            return event
        if self._turn is not None:
            return self._turn.next_event()
        return None

    def _update_idle(self) -> None:
        self.idle = self._turn is None and self.stun.idle
