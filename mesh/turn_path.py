"""The node's TURN allocation as a path for its QUIC links (sans-I/O).

A :class:`TurnPath` puts a :class:`mesh.turn_client.TurnClient` between the
core and the socket, for the links whose route is a :class:`~mesh.paths.TurnRoute`:

* out: :meth:`TurnPath.send` relays a QUIC datagram to the peer's address (as
  the TURN server sees it): the first one binds a channel to it, so from the
  second round trip on datagrams travel as 4-byte-header ChannelData, before
  that as Send indications (the peer's IP needs a permission first:
  :meth:`TurnPath.permit`, or the peer's own packets, which only arrive once
  permitted);
* in: :meth:`TurnPath.receive_datagram` takes what came from the TURN server;
  :meth:`TurnPath.relayed` drains what peers sent, each with the route the core
  takes it from (``receive_datagram(data, TurnRoute(peer), now)``).

It shares the node's socket through the same calls as the client it wraps
(:class:`mesh.demux.TurnUser`: ``server``, ``receive_datagram``,
``datagrams_to_send``, ``get_timer``, ``handle_timer``, ``next_event``), so
the socket's demultiplexer drives it in the client's place; its events are the
client's, except :class:`~mesh.turn_client.DataReceived`, which :meth:`relayed`
hands over instead.

The remote peer needs nothing special: it talks QUIC to our relayed address as
to any other. An allocation no datagram used for ``idle_release`` seconds is
released (:attr:`TurnPath.state` ends ``CLOSED``); a failed one ends ``FAILED``
(the driver drops it and may allocate again). Credentials are the lobby's
time-limited TURN REST ones: :meth:`TurnPath.update_credentials` swaps in fresh
ones before they expire.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable

from mesh.paths import Address, TurnRoute
from mesh.stun_transactions import same_address
from mesh.turn_client import (
    Allocated,
    AllocationFailed,
    ChannelBindFailed,
    DataReceived,
    Released,
    TurnClient,
    TurnEvent,
    TurnState,
)
from protocol.errors import MeshError

__all__ = ["TurnPath"]

logger = logging.getLogger("mesh.node")

_MAX_ROUTES = 1024


class TurnPath:
    """One allocation carrying the links routed through it (see the module docstring)."""

    def __init__(self, client: TurnClient, *, idle_release: float) -> None:
        self.client = client
        self.idle_release = idle_release
        self.outcome: Allocated | AllocationFailed | Released | None = None
        """How the allocation went: None while allocating."""
        self._routes: dict[Address, TurnRoute] = {}
        self._bound: set[Address] = set()
        self._hosts: set[str] = set()
        # hosts whose CreatePermission could not start (every transaction slot taken):
        # asked again as answers free slots
        self._unpermitted: set[str] = set()
        self._inbox: list[tuple[bytes, TurnRoute]] = []
        self._events: deque[TurnEvent] = deque()
        self._last_used = -math.inf
        # when to look at idleness next: at most _last_used + idle_release, moved on by
        # handle_timer only (a deadline moving with every datagram re-armed the node's
        # loop timer on every flush)
        self._idle_at = math.inf
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def server(self) -> Address:
        """The TURN server (what the socket's demultiplexer routes to us)."""
        return self.client.server

    @property
    def state(self) -> TurnState:
        return self.client.state

    @property
    def relayed_address(self) -> Address | None:
        """Our relayed address (where peers send to reach us), once allocated."""
        return self.client.relayed

    @property
    def mapped_address(self) -> Address | None:
        """Our server-reflexive address as the TURN server saw it, once allocated."""
        return self.client.mapped

    # -- commands -------------------------------------------------------------------------

    def allocate(self, now: float) -> None:
        """Start allocating (an ``Allocated`` or ``AllocationFailed`` event follows)."""
        self._last_used = now
        self._idle_at = now + self.idle_release
        self.client.allocate(now)

    def permit(self, hosts: Iterable[str], now: float) -> None:
        """Let these peer IP addresses reach us through the relay (installed once the
        allocation exists; kept and refreshed until it ends)."""
        for host in hosts:
            if host not in self._hosts:
                self._hosts.add(host)
                if self.client.state is TurnState.ALLOCATED:
                    self._permit(host, now)

    def update_credentials(self, username: str, password: str) -> None:
        """Fresh TURN REST credentials: every later request is signed with them."""
        self.client.update_credentials(username, password)

    def release(self, now: float) -> None:
        """Delete the allocation on the server (a ``Released`` event follows)."""
        if self.client.state is TurnState.ALLOCATED:
            self.client.release(now)

    def send(self, route: TurnRoute, data: bytes, now: float) -> None:
        """Relay one QUIC datagram to ``route.peer`` (dropped, as UDP may, when the
        allocation is not up or the peer's IP is not permitted)."""
        client = self.client
        if client.state is not TurnState.ALLOCATED:
            return
        peer = route.peer
        try:
            if peer not in self._bound:
                client.bind_channel(peer, now)  # also (re)installs the IP's permission
                self._bound.add(peer)
                self._hosts.add(peer[0])
            client.send(peer, data)
        except MeshError as exc:  # too many requests in flight, no channel left: as UDP may
            logger.debug("TURN: datagram to %s dropped: %s", peer, exc)
            return
        self._last_used = now
        self.bytes_sent += len(data)

    # -- I/O calls ------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, source: Address, now: float) -> bool:
        """Take a datagram from the socket; True when it came from the TURN server."""
        client = self.client
        if data and 64 <= data[0] <= 79 and same_address(client.server, source):
            # ChannelData, what a relayed link's every datagram is: read straight into the
            # inbox, without the client's event and its drain
            relayed = client.read_channel_data(data)
            if relayed is not None:
                self._relayed(relayed[0], relayed[1], now)
            return True
        if not client.receive_datagram(data, source, now):
            return False
        self._drain(now)
        return True

    def relayed(self) -> list[tuple[bytes, TurnRoute]]:
        """What peers sent through the relay since the last call, with its route."""
        out, self._inbox = self._inbox, []
        return out

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """What to send now, all of it to the TURN server."""
        return self.client.datagrams_to_send(now)

    def next_event(self) -> TurnEvent | None:
        """The next event of the allocation (never a ``DataReceived``: see :meth:`relayed`)."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run (the client's timers, the idle release)."""
        at = self.client.get_timer()
        if self.client.state is not TurnState.ALLOCATED:
            return at
        idle_at = self._idle_at
        return idle_at if at is None or idle_at < at else at

    def handle_timer(self, now: float) -> None:
        """Retransmit and refresh what is due; release the allocation once idle."""
        client = self.client
        client.handle_timer(now)
        if client.state is TurnState.ALLOCATED and now >= self._idle_at:
            self._idle_at = self._last_used + self.idle_release
            if now >= self._idle_at:
                client.release(now)
        self._drain(now)

    # -- internals ------------------------------------------------------------------------

    def _relayed(self, peer: Address, data: bytes, now: float) -> None:
        route = self._routes.get(peer)
        if route is None:
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()  # a cache of small values: rebuilt as needed
            route = self._routes[peer] = TurnRoute(peer)
        self._inbox.append((data, route))
        self._last_used = now
        self.bytes_received += len(data)

    def _drain(self, now: float) -> None:
        client = self.client
        while (event := client.next_event()) is not None:
            if isinstance(event, DataReceived):
                self._relayed(event.peer, event.data, now)
                continue
            if isinstance(event, Allocated):
                self.outcome = event
                for host in self._hosts:
                    self._permit(host, now)
            elif isinstance(event, AllocationFailed | Released):
                self.outcome = event
            elif isinstance(event, ChannelBindFailed):
                self._bound.discard(event.peer)  # the next datagram to it binds again
            self._events.append(event)
        if self._unpermitted and client.state is TurnState.ALLOCATED:
            for host in list(self._unpermitted):
                if not self._permit(host, now):
                    break

    def _permit(self, host: str, now: float) -> bool:
        """Ask for ``host``'s permission now, or keep it for later when no transaction slot
        is free (more peers' addresses at once than requests may be in flight)."""
        try:
            self.client.permit((host, 0), now)
        except MeshError:
            self._unpermitted.add(host)
            return False
        self._unpermitted.discard(host)
        return True
