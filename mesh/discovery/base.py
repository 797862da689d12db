"""The one discovery interface: sources of ``PeerFound`` / ``PeerLost`` events.

A :class:`Discovery` source tells a node which peers exist and how to reach
them. There are two sources: mDNS on a LAN (:mod:`mesh.discovery.mdns`) and the
lobby's peer directory (written with the lobby client). Both produce the same
events, so the code that connects peers does not care where they came from.

Consumers either iterate (``async for event in discovery.events(): ...``; each
iterator has its own bounded queue and starts with a ``PeerFound`` for every
peer already known) or register a plain callback with
:meth:`Discovery.add_listener`. :attr:`Discovery.peers` is the current view.

A source only reports what it saw; it does not judge. A peer of another LAN
group or protocol version is still reported (with its ``group_tag`` and
``version``): deciding whom to connect to is the caller's business (see
:mod:`mesh.discovery.lan`).

Subclasses implement :meth:`Discovery._start` and :meth:`Discovery._stop` and
call :meth:`Discovery._found` / :meth:`Discovery._lost`; the base class keeps
the view, suppresses repeats and fans the events out. A lobby directory source
maps the lobby's ``PEER_INFO`` pushes onto those two calls (``ticket`` set,
``group_tag`` None); :class:`ManualDiscovery` is the simplest source: peers are
announced and withdrawn by calls.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Self

from mesh.fanout import EventFanout
from protocol.errors import DiscoveryError

__all__ = [
    "Discovery",
    "DiscoveryEvent",
    "DiscoveryListener",
    "Endpoint",
    "ManualDiscovery",
    "PeerFound",
    "PeerLost",
]

log = logging.getLogger("mesh.discovery")

Endpoint = tuple[str, int]
"""A UDP endpoint ``(host, port)`` where a peer's node accepts QUIC."""


@dataclass(frozen=True, slots=True)
class PeerFound:
    """A peer exists and can be reached at ``endpoints``.

    Sent again when something about a known peer changed (name, endpoints, ...).
    ``group_tag`` is set by LAN sources (public tag of the LAN group, never the
    key); ``ticket`` by the lobby source (the lobby-signed peer ticket).
    ``source`` names the source (``"mdns"``, ``"lobby"``).
    """

    peer_id: str
    name: str
    endpoints: tuple[Endpoint, ...]
    version: str
    group_tag: str | None = None
    ticket: str | None = None
    source: str = ""
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class PeerLost:
    """A peer reported earlier is gone (said goodbye, or went silent)."""

    peer_id: str
    source: str = ""


DiscoveryEvent = PeerFound | PeerLost
DiscoveryListener = Callable[[DiscoveryEvent], None]


class Discovery:
    """Base of every discovery source; use as ``async with source: ...``."""

    source_name = "discovery"

    def __init__(self) -> None:
        self._peers: dict[str, PeerFound] = {}
        self._fanout: EventFanout[DiscoveryEvent] = EventFanout(log, "discovery listener")
        self._started = False
        self._closed = False

    # -- public API ---------------------------------------------------------

    @property
    def peers(self) -> Mapping[str, PeerFound]:
        """Peers currently known, by peer id (a read-only live view)."""
        return MappingProxyType(self._peers)

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`close`."""
        return self._started and not self._closed

    async def start(self) -> None:
        """Start advertising and browsing. Raises :class:`DiscoveryError`."""
        if self._closed:
            raise DiscoveryError(f"{self.source_name} discovery was closed; make a new one")
        if self._started:
            return
        await self._start()
        self._started = True

    async def close(self) -> None:
        """Stop, withdraw our own advertisement, end every event iterator. Idempotent.

        The view (:attr:`peers`) is emptied; no ``PeerLost`` is sent for it.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._started:
                await self._stop()
        finally:
            self._peers.clear()
            self._fanout.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def add_listener(self, listener: DiscoveryListener) -> Callable[[], None]:
        """Call ``listener(event)`` for every future event; returns a remover.

        The listener runs synchronously in the event loop: keep it short. An
        exception in it is logged and does not reach the source.
        """
        return self._fanout.add_listener(listener)

    def events(self) -> AsyncIterator[DiscoveryEvent]:
        """Iterate over events: first a ``PeerFound`` per known peer, then changes.

        Ends when the source is closed. The queue behind it is bounded; a
        consumer that falls more than 1024 events behind loses the oldest.
        """
        return self._fanout.events(self._peers.values())

    # -- for subclasses -----------------------------------------------------

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    def _found(self, peer: PeerFound) -> None:
        """Record ``peer``; emit ``PeerFound`` unless nothing changed."""
        if self._closed:
            return
        if self._peers.get(peer.peer_id) == peer:
            return
        self._peers[peer.peer_id] = peer
        self._fanout.emit(peer)

    def _lost(self, peer_id: str) -> None:
        """Forget ``peer_id``; emit ``PeerLost`` if it was known."""
        if self._closed or self._peers.pop(peer_id, None) is None:
            return
        self._fanout.emit(PeerLost(peer_id, self.source_name))


class ManualDiscovery(Discovery):
    """A source fed by hand: :meth:`announce` and :meth:`withdraw` (tests, static peer lists)."""

    source_name = "manual"

    async def _start(self) -> None:
        return None

    async def _stop(self) -> None:
        return None

    def announce(self, peer: PeerFound) -> None:
        """Report ``peer`` as found (again, if it changed)."""
        self._found(peer)

    def withdraw(self, peer_id: str) -> None:
        """Report ``peer_id`` as lost."""
        self._lost(peer_id)
