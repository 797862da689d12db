"""LAN play with no lobby: a :class:`~mesh.node.PeerNode` found and joined over mDNS.

:class:`LanNode` puts three things together:

* a :class:`~mesh.node.PeerNode` authenticated by :class:`LanGroupAuth` (the
  passphrase's group key; identities are the nodes' own keys);
* an :class:`~mesh.discovery.mdns.MdnsDiscovery` advertising the node's
  endpoint, peer id, character name and group tag on the chosen interfaces;
* the glue: every discovered peer of our group and a compatible protocol
  version is dialled (the lower peer id first; the other side dials too after
  ``dial_grace`` seconds unless the connection already exists); peers of
  another group or version are *ignored* (never dialled); an endpoint that
  fails the handshake is *rejected*: that (peer id, endpoint) pair is never
  dialled again until the peer id is lost, but the peer id itself is not
  blocked (a TXT record is unauthenticated: an impostor copying a member's id
  must not lock the real member out);
* only endpoints inside the subnet of one of the mDNS interfaces (127.0.0.0/8
  on loopback) are ever dialled: :class:`MdnsDiscovery` drops the others, and
  the dialler checks again, so a forged advertisement cannot aim our QUIC
  Initials at a third party;
  a member that vanishes from mDNS and stays silent for one more
  ``peer_timeout`` is disconnected.

Membership events (:class:`MemberJoined`, :class:`MemberLeft`,
:class:`PeerIgnored`, plus the discovery's ``PeerFound``/``PeerLost``) go to
listeners (:meth:`LanNode.add_listener`) and to :meth:`LanNode.events`
iterators. Chat and movement arrive through :meth:`LanNode.register_handler`
(``WHISPER``, ``PARTY_CHAT``, ``POSITION_UPDATE``, ``PLAYER_LEFT_AREA``), as
with a bare ``PeerNode``. "Party" on a LAN is everyone admitted to the group.

Example::

    async with LanNode(name="Aria", passphrase="secret", interfaces=["192.168.1.20"]) as lan:
        lan.register_handler(MessageType.WHISPER, print)
        await lan.wait_for_members(1, timeout=30)
        await lan.send_party_chat("hello, everyone")
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from mesh.auth import PeerIdentity
from mesh.core import MeshConfig
from mesh.discovery.base import DiscoveryEvent, PeerFound, PeerLost
from mesh.discovery.lan_auth import LanGroupAuth
from mesh.discovery.mdns import MdnsDiscovery, lan_interface_addresses, parse_interfaces
from mesh.events import PeerConnected
from mesh.fanout import EventFanout
from mesh.node import Handler, PartySendResult, PeerEvent, PeerNode, SendResult
from protocol.crypto import Identity
from protocol.errors import (
    HandshakeError,
    MeshError,
    PeerUnreachableError,
    ProtocolError,
)
from protocol.messages.base import MessageType
from protocol.messages.location import PositionUpdateMessage
from protocol.version import PROTOCOL_VERSION, check_version

__all__ = [
    "LanEvent",
    "LanListener",
    "LanNode",
    "MemberJoined",
    "MemberLeft",
    "PeerIgnored",
]

log = logging.getLogger("mesh.lan")

_WILDCARD = "0.0.0.0"  # noqa: S104 - the node's socket; mDNS itself is on explicit interfaces


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A peer proved the group key and has a direct connection."""

    identity: PeerIdentity


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """A member's direct connection ended (it left, died or vanished from mDNS)."""

    identity: PeerIdentity
    reason: str


@dataclass(frozen=True, slots=True)
class PeerIgnored:
    """A discovered peer we will not admit: other group, other version, failed handshake."""

    peer_id: str
    name: str
    reason: str


LanEvent = DiscoveryEvent | MemberJoined | MemberLeft | PeerIgnored
LanListener = Callable[[LanEvent], None]


class LanNode:
    """Join a LAN game: ``async with LanNode(name=..., passphrase=...) as lan: ...``.

    ``interfaces``: local IPv4 addresses mDNS runs on (default: the host's LAN
    addresses; tests pass ``["127.0.0.1"]`` or a namespace address). ``host``:
    where the node's UDP socket binds (default: the only interface if one was
    given, else all). ``port``: the node's UDP port (0: any free one; None:
    9000, or a free one when 9000 is taken).
    """

    def __init__(
        self,
        *,
        name: str,
        passphrase: str | None = None,
        group_key: bytes | None = None,
        interfaces: Sequence[str] | None = None,
        host: str | None = None,
        port: int | None = None,
        identity: Identity | None = None,
        location_id: int = 1,
        faction: str | None = None,
        heartbeat: float = 5.0,
        peer_timeout: float | None = None,
        dial_grace: float = 1.0,
        retry_interval: float = 5.0,
        config: MeshConfig | None = None,
    ) -> None:
        self.interfaces = parse_interfaces(
            lan_interface_addresses() if interfaces is None else interfaces
        )
        if host is None:
            host = self.interfaces[0] if len(self.interfaces) == 1 else _WILDCARD
        self.host = host
        self.identity = identity or Identity.generate()
        self.location_id = location_id
        self.auth = LanGroupAuth(
            self.identity,
            character_name=name,
            now=time.time(),
            passphrase=passphrase,
            group_key=group_key,
            faction=faction,
        )
        self.node = PeerNode(self.identity, host=host, port=port, auth=self.auth, config=config)
        self._heartbeat = heartbeat
        self._peer_timeout = peer_timeout
        self.dial_grace = dial_grace
        self.retry_interval = retry_interval
        self.discovery: MdnsDiscovery | None = None
        self._members: dict[str, PeerIdentity] = {}
        self._ignored: dict[str, PeerIgnored] = {}
        self._failed: set[tuple[str, tuple[str, int]]] = set()
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._vanishing: dict[str, asyncio.Task[None]] = {}
        self._leave_reasons: dict[str, str] = {}
        self._fanout: EventFanout[LanEvent] = EventFanout(log, "lan listener", label=_describe)
        self._members_changed = asyncio.Event()
        self._remove_discovery_listener: Callable[[], None] | None = None
        self._closed = False
        # membership follows the node's connections, inbound and outbound, as they happen
        self.node.add_peer_listener(self._on_peer_event)

    # -- properties -----------------------------------------------------------

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    @property
    def name(self) -> str:
        return self.auth.character_name

    @property
    def character_id(self) -> int:
        return self.auth.character_id

    @property
    def group_tag(self) -> str:
        return self.auth.group_tag

    @property
    def members(self) -> Mapping[str, PeerIdentity]:
        """Admitted peers with a live direct connection, by peer id."""
        return dict(self._members)

    @property
    def found(self) -> Mapping[str, PeerFound]:
        """Every peer mDNS currently shows, of any group or version."""
        return dict(self.discovery.peers) if self.discovery is not None else {}

    @property
    def ignored(self) -> Mapping[str, PeerIgnored]:
        """Discovered peers not admitted, with the reason."""
        return dict(self._ignored)

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Bind the node, start advertising and browsing.

        Raises :class:`~protocol.errors.DiscoveryError` when mDNS cannot start.
        """
        await self.node.start()
        try:
            _, port = self.node.address
            advertise = None if self.host == _WILDCARD else [self.host]
            self.auth.set_endpoints(
                [f"{address}:{port}" for address in (advertise or self.interfaces)],
                now=time.time(),
            )
            self.discovery = MdnsDiscovery(
                peer_id=self.peer_id,
                name=self.name,
                port=port,
                group_tag=self.group_tag,
                interfaces=self.interfaces,
                advertise=advertise,
                heartbeat=self._heartbeat,
                peer_timeout=self._peer_timeout,
            )
            self._remove_discovery_listener = self.discovery.add_listener(self._on_discovery)
            await self.discovery.start()
        except BaseException:
            await self.close()
            raise
        log.info("lan: %s (%s) joined group %s", self.name, self.peer_id[:12], self.group_tag)

    async def close(self) -> None:
        """Withdraw from mDNS, close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = [*self._dialers.values(), *self._vanishing.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._dialers.clear()
        self._vanishing.clear()
        try:
            if self.discovery is not None:
                await self.discovery.close()
        finally:
            await self.node.close()
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

    # -- events ---------------------------------------------------------------

    def add_listener(self, listener: LanListener) -> Callable[[], None]:
        """Call ``listener(event)`` for each membership / discovery event; returns a remover."""
        return self._fanout.add_listener(listener)

    def events(self) -> AsyncIterator[LanEvent]:
        """Iterate over future events until the node closes (bounded queue, oldest dropped)."""
        return self._fanout.events()

    def register_handler(self, message_type: MessageType, handler: Handler) -> None:
        """Handle messages from members (see :meth:`PeerNode.register_handler`)."""
        self.node.register_handler(message_type, handler)

    def unregister_handler(self, message_type: MessageType, handler: Handler) -> None:
        """Remove a handler added with :meth:`register_handler` (no error if absent)."""
        self.node.unregister_handler(message_type, handler)

    async def wait_for_members(self, count: int, *, timeout: float) -> Mapping[str, PeerIdentity]:  # noqa: ASYNC109
        """Wait until at least ``count`` members are connected; ``TimeoutError`` otherwise."""
        await asyncio.wait_for(self._members_until(lambda: len(self._members) >= count), timeout)
        return self.members

    # -- game traffic -----------------------------------------------------------

    def member(self, who: str) -> PeerIdentity:
        """A member by character name (case-insensitive) or peer id (or a unique prefix).

        Raises :class:`PeerUnreachableError` when none or several match.
        """
        wanted = who.strip()
        if wanted in self._members:
            return self._members[wanted]
        matches = [m for m in self._members.values() if m.character_name.lower() == wanted.lower()]
        if not matches and len(wanted) >= 4:
            matches = [m for pid, m in self._members.items() if pid.startswith(wanted.lower())]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise PeerUnreachableError(f"no member called {who!r}")
        ids = ", ".join(m.peer_id[:8] for m in matches)
        raise PeerUnreachableError(f"{who!r} is ambiguous ({ids}): use a peer id")

    async def send_whisper(self, who: str, text: str) -> SendResult:
        """Whisper to one member (name or peer id); resolves when it was acknowledged."""
        target = self.member(who)
        return await self.node.send_whisper(target.peer_id, text)

    async def send_party_chat(self, text: str) -> PartySendResult:
        """Party chat to every member (the LAN group is the party)."""
        return await self.node.send_party_chat(list(self._members), text, party_id=self.group_tag)

    def send_position_update(
        self,
        position: tuple[float, float, float],
        velocity: tuple[float, float, float] | None = None,
    ) -> PositionUpdateMessage:
        """Send our position to every member (movement datagram, newest wins)."""
        return self.node.send_position_update(position, velocity, location_id=self.location_id)

    def sender_of(self, character_id: int | None) -> PeerIdentity | None:
        """The member with this character id (to name the sender of a position update)."""
        for member in self._members.values():
            if member.character_id == character_id:
                return member
        return None

    # -- glue -------------------------------------------------------------------

    def _on_discovery(self, event: DiscoveryEvent) -> None:
        self._emit(event)
        if isinstance(event, PeerLost):
            task = self._dialers.pop(event.peer_id, None)
            if task is not None:
                task.cancel()
            self._ignored.pop(event.peer_id, None)
            self._failed = {f for f in self._failed if f[0] != event.peer_id}
            if event.peer_id in self._members and event.peer_id not in self._vanishing:
                self._vanishing[event.peer_id] = asyncio.create_task(
                    self._drop_if_still_gone(event.peer_id), name=f"lan-vanish-{event.peer_id[:8]}"
                )
            return
        vanishing = self._vanishing.pop(event.peer_id, None)
        if vanishing is not None:
            vanishing.cancel()
        reason = self._incompatible(event)
        if reason is not None:
            self._ignore(event, reason)
            return
        self._ignored.pop(event.peer_id, None)
        self._ensure_dialer(event.peer_id)

    async def _drop_if_still_gone(self, peer_id: str) -> None:
        """A member mDNS lost: disconnect it unless it reappears within the grace time.

        mDNS silence alone is weak evidence (a stalled sender, a lost packet or
        two); a dead peer is dropped one more silence timeout later (its QUIC
        connection would only time out later still).
        """
        grace = self.discovery.peer_timeout if self.discovery is not None else 0.0
        try:
            await asyncio.sleep(grace)
        finally:
            if self._vanishing.get(peer_id) is asyncio.current_task():
                del self._vanishing[peer_id]
        if peer_id not in self.found and peer_id in self.node.peers:
            self._leave_reasons[peer_id] = "vanished from the LAN"
            self.node.disconnect_peer(peer_id)  # MemberLeft comes from its PeerDisconnected

    def _incompatible(self, peer: PeerFound) -> str | None:
        if peer.group_tag != self.group_tag:
            return "another LAN group"
        try:
            check_version(peer.version)
        except ProtocolError:
            return f"protocol {peer.version} (ours is {PROTOCOL_VERSION})"
        return None

    def _ignore(self, peer: PeerFound, reason: str) -> None:
        ignored = PeerIgnored(peer.peer_id, peer.name, reason)
        if self._ignored.get(peer.peer_id) != ignored:
            self._ignored[peer.peer_id] = ignored
            log.info("lan: ignoring %s (%s): %s", peer.name, peer.peer_id[:12], reason)
            self._emit(ignored)

    def _ensure_dialer(self, peer_id: str) -> None:
        if self._closed or peer_id in self._members:
            return
        task = self._dialers.get(peer_id)
        if task is not None and not task.done():
            return
        self._dialers[peer_id] = asyncio.create_task(
            self._dial(peer_id), name=f"lan-dial-{peer_id[:8]}"
        )

    async def _dial(self, peer_id: str) -> None:
        """Connect to a discovered member until connected, rejected or gone."""
        if self.peer_id > peer_id and await self._joins_within(peer_id, self.dial_grace):
            return  # the lower peer id dials first; we dial only if it did not
        while not self._closed:
            if peer_id in self._members:
                return
            peer = self.found.get(peer_id)
            if peer is None or self._incompatible(peer) is not None:
                return
            endpoints = [e for e in peer.endpoints if self._dialable(peer_id, e)]
            if not endpoints:
                return  # every endpoint failed the handshake or is off our subnets
            for endpoint in endpoints:
                try:
                    identity = await self.node.connect(None, endpoint)
                except HandshakeError as exc:
                    self._reject(peer, endpoint, f"handshake failed: {exc}")
                    continue
                except (PeerUnreachableError, MeshError, OSError) as exc:
                    log.debug("lan: dial %s at %s failed: %s", peer_id[:12], endpoint, exc)
                    continue
                if identity.peer_id != peer_id:
                    log.warning(
                        "lan: %s:%d advertised %s but is %s",
                        endpoint[0],
                        endpoint[1],
                        peer_id[:12],
                        identity.peer_id[:12],
                    )
                if peer_id in self._members:
                    return
            if await self._joins_within(peer_id, self.retry_interval):
                return

    def _dialable(self, peer_id: str, endpoint: tuple[str, int]) -> bool:
        if (peer_id, endpoint) in self._failed:
            return False
        subnets = self.discovery.subnets if self.discovery is not None else []
        try:
            address = ipaddress.IPv4Address(endpoint[0])
        except ValueError:
            return False
        return any(address in net for net in subnets)

    def _reject(self, peer: PeerFound, endpoint: tuple[str, int], reason: str) -> None:
        """Never dial ``endpoint`` for ``peer`` again (until the peer id is lost)."""
        self._failed.add((peer.peer_id, endpoint))
        log.info("lan: %s at %s:%d rejected: %s", peer.peer_id[:12], *endpoint, reason)
        self._emit(PeerIgnored(peer.peer_id, peer.name, reason))

    async def _members_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._members_changed.clear()
            await self._members_changed.wait()

    async def _joins_within(self, peer_id: str, seconds: float) -> bool:
        """Wait up to ``seconds`` for ``peer_id`` to become a member (it dialled us)."""
        try:
            await asyncio.wait_for(self._members_until(lambda: peer_id in self._members), seconds)
        except TimeoutError:
            return False
        return True

    def _on_peer_event(self, event: PeerEvent) -> None:
        """A connection came up or went down: announce the membership change."""
        if self._closed:
            return
        peer_id = event.identity.peer_id
        if isinstance(event, PeerConnected):
            if peer_id not in self._members:
                self._members[peer_id] = event.identity
                self._members_changed.set()
                self._emit(MemberJoined(event.identity))
            return
        reason = self._leave_reasons.pop(peer_id, event.reason)
        identity = self._members.pop(peer_id, None)
        if identity is not None:
            self._members_changed.set()
            self._emit(MemberLeft(identity, reason))
        for other, peer in self.found.items():
            if other not in self._members and other not in self._ignored:
                if self._incompatible(peer) is None:
                    self._ensure_dialer(other)

    def _emit(self, event: LanEvent) -> None:
        self._fanout.emit(event)


def _describe(event: LanEvent) -> str:
    if isinstance(event, MemberJoined | MemberLeft):
        return f"{type(event).__name__} of {event.identity.peer_id[:12]}"
    return repr(event)
