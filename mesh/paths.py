"""How a peer is reached: the path kinds, and where a link's datagrams go (plain values).

* :data:`Path`: ``"direct"`` (QUIC from our socket to the peer's), ``"turn"`` (the
  same QUIC through a TURN server's relayed address, ours or the peer's),
  ``"relay"`` (sealed envelopes through the lobby WebSocket: reliable messages only).
* :data:`Route`: a socket :data:`Address`, or a :class:`TurnRoute` (the peer
  reached through the node's own TURN allocation; the driver hands those datagrams
  to its TURN client instead of the socket). The core routes incoming datagrams by
  QUIC connection id whatever their route.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, final

__all__ = ["Address", "Path", "Route", "TurnRoute", "route_address"]

Address = tuple[Any, ...]
"""A socket address as ``recvfrom`` returns it (``(host, port)`` for IPv4)."""

Path = Literal["direct", "turn", "relay"]
"""How a peer is reached (see the module docstring)."""


@final  # the driver tells a route from an address by ``type(route) is TurnRoute``
@dataclass(frozen=True, slots=True)
class TurnRoute:
    """Datagrams to and from ``peer`` travel through the node's own TURN allocation.

    ``peer`` is the peer's address as the TURN server sees it (what a TURN
    ``DataReceived`` names, where a Send indication or ChannelData goes).
    """

    peer: Address

    def __str__(self) -> str:
        return f"turn:{self.peer[0]}:{self.peer[1]}"


Route = Address | TurnRoute
"""Where a link's datagrams go: a socket address, or a peer through our TURN allocation."""


def route_address(route: Route) -> Address:
    """The peer's address on ``route`` (for a TURN route: as the TURN server sees it)."""
    return route.peer if isinstance(route, TurnRoute) else route
