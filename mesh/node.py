"""``PeerNode``: the asyncio adapter around the sans-I/O :class:`mesh.core.MeshCore`.

One UDP socket (``loop.create_datagram_endpoint`` on the host the caller
chooses) serves every QUIC connection the node accepts or opens. The adapter
only moves bytes and time: each datagram, timer and API call is handed to the
core, then :meth:`PeerNode._transmit` flushes what the core wants to send,
dispatches its events and re-arms the single timer.

Example::

    auth = LobbyTicketAuth(lobby_public_key, my_ticket)
    async with PeerNode(identity, host="127.0.0.1", port=0, auth=auth) as node:
        node.register_handler(MessageType.WHISPER, on_whisper)
        await node.connect(peer_ticket, "127.0.0.1:9001")
        result = await node.send_whisper(peer_character_id, "hello")
        print(result.path)  # "direct" or "relay"

Connection events: :meth:`PeerNode.add_peer_listener` (a callback, sync or async)
and :meth:`PeerNode.peer_events` (an async iterator) report
:class:`~mesh.events.PeerConnected` when a peer is authenticated, inbound or
outbound, and :class:`~mesh.events.PeerDisconnected` (with the close code and
reason) when its direct connection ends: once each per peer going up and down,
whatever happens to the connections underneath (a simultaneous dial, a
replaced connection). :meth:`PeerNode.add_path_listener` reports
:class:`~mesh.events.PathChanged`: a connected peer moved to another path (direct
or TURN), or the path in use went silent.

TURN (a third path, beside direct QUIC and the lobby relay): after
:meth:`PeerNode.allocate_turn` the node holds a relayed address on a TURN
server (:mod:`mesh.turn_path`), sharing its one UDP socket; peers dial that
address as any other, and links to them run through the allocation. The policy
of when to allocate is the caller's (:mod:`mesh.client.turn`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import math
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh import _quicshim
from mesh.auth import Authenticator, PeerIdentity
from mesh.config import MeshConfig
from mesh.core import MeshCore
from mesh.demux import TurnUser
from mesh.events import (
    DialFailed,
    MessageDelivered,
    Path,
    PathChanged,
    PeerConnected,
    PeerDisconnected,
    PositionReceived,
    RelayRequest,
    SendSettled,
)
from mesh.fanout import EventFanout, notify
from mesh.handshake import CloseCode
from mesh.link import Address
from mesh.node_nat import (
    BindingOutcome,
    SharedSocket,
    first_to_connect,
    retrieve,
    srflx_candidate,
)
from mesh.node_types import (
    ConnectionQuality,
    Handler,
    PartySendResult,
    PeerEvent,
    PeerListener,
    RelayLike,
    RelayTransport,
    SendResult,
    Target,
    VecLike,
    describe_peer_event,
)
from mesh.paths import TurnRoute
from mesh.stun_client import MappingBehaviour, Retransmission, StunClient
from mesh.turn_client import Allocated, AllocationFailed, Released, TurnClient, TurnEvent, TurnState
from mesh.turn_path import TurnPath
from mesh.udp import Batch, UdpSocket
from protocol.candidates import Candidate
from protocol.crypto import Identity
from protocol.errors import (
    CryptoError,
    ErrorCode,
    HandshakeError,
    MeshError,
    NotConnectedError,
    PeerUnreachableError,
    PortInUseError,
)
from protocol.factories import create_position_update
from protocol.messages.base import BaseMessage, MessageType
from protocol.messages.chat import PartyChatMessage, WhisperMessage
from protocol.messages.location import PlayerLeftAreaMessage, PositionUpdateMessage
from protocol.movement import next_seq

__all__ = [
    "PREFERRED_PORT",
    "PUNCH_PACE",
    "STUN_RETRANSMISSION",
    "ConnectionQuality",
    "Handler",
    "PartySendResult",
    "PeerEvent",
    "PeerListener",
    "PeerNode",
    "RelayTransport",
    "SendResult",
    "Target",
]

logger = logging.getLogger("mesh.node")

E = TypeVar("E")

PREFERRED_PORT = 9000
"""The UDP port a node binds when none is given (the original specification's
``p2p_port``); when it is taken, a free one is used instead."""

STUN_RETRANSMISSION = Retransmission(rto=0.25, max_transmissions=4, final_wait=4.0)
"""How the node's STUN Binding requests are resent: at 0, 0.25, 0.75 and 1.75 s, and a
server silent 1 s after the last one has failed (2.75 s in all; RFC 8489's defaults
would take 39.5 s, far too long to wait at select)."""

PUNCH_PACE = 0.005
"""Seconds between the dials of one hole punch (:meth:`PeerNode.punch`)."""

_WALL_OFFSET_SLACK = 1e-3
"""How far the core's Unix-time offset may lag the clocks' (seconds): credentials expire
in whole seconds, so a millisecond is nothing, and the offset is set only past it."""
_STILL = (0.0, 0.0, 0.0)  # the velocity of an update that gives none
_POSITION_UPDATE = MessageType.POSITION_UPDATE

_HANDSHAKE_CODES = frozenset(
    {
        CloseCode.TICKET_INVALID,
        CloseCode.TICKET_EXPIRED,
        CloseCode.CHALLENGE_FAILED,
        CloseCode.PEER_MISMATCH,
        CloseCode.HANDSHAKE_FAILED,
        CloseCode.SELF_CONNECTION,
    }
)


class PeerNode:
    """A peer of the mesh: direct QUIC connections, reliable chat, movement, relay fallback.

    ``identity_key``: the node's Ed25519 key (or a :class:`protocol.crypto.Identity`);
    ``host``/``port``: where the one UDP socket binds: ``port=None`` prefers
    :data:`PREFERRED_PORT` (9000) and falls back to a free port when it is taken
    (one log line names the port used); ``port=0`` is any free port; an explicit
    port that is taken fails :meth:`start` with :class:`PortInUseError`;
    ``auth``: an :class:`~mesh.auth.Authenticator` (:class:`~mesh.auth.LobbyTicketAuth`);
    ``relay``: optional :class:`RelayTransport` (or ``async f(character_id, data)``)
    used when no direct connection can be opened; ``max_connections``: at most this
    many direct peers, chosen by area of interest (default 10, the seed's
    ``p2p_max_connections``; overrides ``config``); ``config``: every other tunable
    (:class:`~mesh.config.MeshConfig`, copied).
    """

    def __init__(
        self,
        identity_key: Ed25519PrivateKey | Identity,
        *,
        host: str,
        port: int | None = None,
        auth: Authenticator,
        relay: RelayLike | None = None,
        max_connections: int | None = None,
        config: MeshConfig | None = None,
    ) -> None:
        _quicshim.check_aioquic_version()
        self.identity = (
            identity_key if isinstance(identity_key, Identity) else Identity(identity_key)
        )
        self.config = dataclasses.replace(config) if config is not None else MeshConfig.from_env()
        if max_connections is not None:
            self.config.max_connections = max_connections
        self._host = host
        self._port = port
        self._auth = auth
        self._relay = relay
        self.core = MeshCore(
            self.identity, auth, config=self.config, relay_enabled=relay is not None
        )
        self._core_events = self.core.events  # drained by _dispatch
        self._handlers: dict[MessageType, list[Handler]] = {}
        # movement's handlers: one list for the node's life, read per update without a lookup
        self._position_handlers: list[Handler] = []
        self._handlers[_POSITION_UPDATE] = self._position_handlers
        self._transport: UdpSocket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._dials: dict[int, asyncio.Future[PeerIdentity]] = {}
        self._sends: dict[int, asyncio.Future[Path]] = {}
        self._up: dict[str, PeerConnected] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._peer_fanout: EventFanout[PeerEvent] = EventFanout(
            logger, "peer listener", spawn=self._spawn, label=describe_peer_event
        )
        self._seq = 0
        self._family = socket.AF_INET
        self._closed = False
        self._wall_offset = -math.inf  # what _now last gave the core: none yet
        self._shared = SharedSocket(StunClient(STUN_RETRANSMISSION, software="shards-mesh"))
        self._sockets = self._shared.clients
        self._turn: TurnPath | None = None
        self._turn_ready: asyncio.Future[Allocated] | None = None
        self._path_listeners: list[Callable[[PathChanged], None]] = []
        self._turn_listeners: list[Callable[[TurnEvent], None]] = []

    # lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Bind the UDP socket and start serving."""
        if self._transport is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._transport = await self._bind()
        self._family = self._transport.family
        logger.info("peer node %s listening on %s", self.identity.peer_id[:12], self.endpoint)

    async def _bind(self) -> UdpSocket:
        """The UDP socket on ``port`` (None: the preferred port, else any free one)."""
        port = PREFERRED_PORT if self._port is None else self._port
        try:
            return await UdpSocket.open(self._host, port, self._on_datagrams)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            if self._port is not None:
                raise PortInUseError(
                    f"UDP port {port} is already in use (another peer on this machine?); "
                    "choose another with --port N, or --port 0 for any free port",
                    details={"port": port},
                ) from None
        sock = await UdpSocket.open(self._host, 0, self._on_datagrams)
        logger.warning(
            "UDP port %d is taken (another peer on this machine?); using port %d",
            port,
            sock.sockname[1],
        )
        return sock

    async def close(self) -> None:
        """Close every connection (peers see code NORMAL), fail pending sends, free the socket."""
        if self._closed:
            return
        self._closed = True
        if self._transport is not None and self._loop is not None:
            self.core.close(self._loop.time())
            if self._turn is not None:
                self._turn.release(self._loop.time())  # politely: the server frees it now
            self._transmit()
        if self._turn_ready is not None and not self._turn_ready.done():
            self._turn_ready.cancel()
        self._peer_fanout.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending: list[asyncio.Future[Any]] = [*self._dials.values(), *self._sends.values()]
        for fut in pending:
            if not fut.done():
                fut.set_exception(PeerUnreachableError("the node closed"))
        self._dials.clear()
        self._sends.clear()
        self._shared.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()
            await self._transport.wait_closed()

    async def __aenter__(self) -> PeerNode:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # properties -----------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` of the UDP socket (after :meth:`start`)."""
        if self._transport is None:
            raise NotConnectedError("the node is not started")
        sockname = self._transport.sockname
        return (sockname[0], sockname[1])

    @property
    def endpoint(self) -> str:
        """``"host:port"`` of the socket, the form tickets and ``connect`` use."""
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def peer_id(self) -> str:
        """This node's peer id (fingerprint of its identity key)."""
        return self.identity.peer_id

    @property
    def peers(self) -> dict[str, PeerIdentity]:
        """Peers with a live, authenticated direct connection, by peer id."""
        return self.core.peers

    def connection_quality(self, target: Target) -> ConnectionQuality | None:
        """How a connected peer (character id or peer id) is reached right now: path in
        use, RTT, loss, bytes each way (:class:`~mesh.quality.ConnectionQuality`).

        None when the peer is unknown, neither a direct link nor the relay connects
        it, or the node is not running.
        """
        if self._transport is None or self._closed:
            return None
        return self.core.connection_quality(target, self._now())

    def connection_qualities(self) -> dict[str, ConnectionQuality]:
        """:meth:`connection_quality` of every connected peer, by peer id."""
        if self._transport is None or self._closed:
            return {}
        return self.core.connection_qualities(self._now())

    def movement_available(self, target: Target) -> bool:
        """True when our position updates can reach the peer (character id or peer id).

        Movement travels only as QUIC datagrams on an authenticated connection
        (a direct path, or QUIC relayed by TURN); the lobby relay carries
        whispers and party chat but never movement. False while no such
        connection is up: the peer is unknown, still being dialled, or reached
        only through the lobby relay (its UDP is blocked, no path opened), or
        the node is not running. It turns True with the peer's
        :class:`~mesh.events.PeerConnected` and False with its
        :class:`~mesh.events.PeerDisconnected` (:meth:`add_peer_listener`).
        """
        if self._transport is None or self._closed:
            return False
        identity = self.core.known_peer(target)
        return identity is not None and identity.peer_id in self.core.peers

    def known_peer(self, target: Target) -> PeerIdentity | None:
        """A peer whose ticket we verified (connected or not), by character id or peer id."""
        return self.core.known_peer(target)

    @property
    def stats(self) -> Mapping[str, int]:
        """Counters of dropped input (bad datagrams, spoofed updates, bad relay envelopes...)
        and of the admission of new connections (``gate_*``, see :mod:`mesh.gate`)."""
        return {**self.core.stats, **self.core.gate.stats, **self._sockets.stats}

    # what else shares the socket: STUN, TURN --------------------------------------------

    @property
    def stun(self) -> StunClient:
        """The STUN Binding client of the node's socket (:meth:`discover_reflexive` uses it)."""
        return self._sockets.stun

    @property
    def turn(self) -> TurnUser | None:
        """The TURN client sharing the node's socket (None until :meth:`attach_turn`)."""
        return self._sockets.turn

    def attach_turn(
        self, client: TurnUser | None, on_event: Callable[[TurnEvent], None] | None = None
    ) -> None:
        """Share the socket with ``client`` (None: detach): every datagram from its server
        goes to it, the node flushes and times it with its own, and hands each of its
        events to ``on_event`` (called in the loop; it must not block)."""
        self._shared.attach_turn(client, on_event)
        if self._transport is not None and not self._closed:
            self._transmit()

    @property
    def mapping_behaviour(self) -> MappingBehaviour:
        """What the STUN answers so far say of our NAT (two servers needed to tell)."""
        return self._sockets.stun.mapping_behaviour()

    async def discover_reflexive(
        self, servers: Iterable[str | tuple[str, int]]
    ) -> Candidate | None:
        """Our server-reflexive candidate: how ``servers`` (STUN, ``host:port`` or tuples)
        see the node's own socket, learned by Binding requests sent from it.

        Asks every server at once and waits for every answer (each fails within
        :data:`STUN_RETRANSMISSION`'s 2.75 s); returns the mapping of the first server
        in ``servers`` that answered, None when none did. Two or more answers also
        tell :attr:`mapping_behaviour`. A server name that does not resolve counts as
        a server that did not answer.
        """
        loop = self._require_started()
        waiters: list[asyncio.Future[BindingOutcome]] = []
        for server in servers:
            try:
                addr = await self._resolve(server)
            except (MeshError, OSError) as exc:
                logger.info("STUN server %s skipped: %s", server, exc)
                continue
            server_addr = (str(addr[0]), int(addr[1]))
            waiters.append(self._shared.binding(server_addr, self._now(), loop))
        self._transmit()
        return srflx_candidate(await asyncio.gather(*waiters))

    # handlers -----------------------------------------------------------------------

    def register_handler(self, message_type: MessageType, handler: Handler) -> None:
        """Call ``handler(message)`` (sync or async) for each message of ``message_type``.

        Mesh deliveries: WHISPER, PARTY_CHAT, CHAT, MOVE (sender fields are the
        authenticated peer's), POSITION_UPDATE (newest wins), PLAYER_LEFT_AREA
        (a direct peer disconnected or was dropped).
        """
        self._handlers.setdefault(MessageType(message_type), []).append(handler)

    def unregister_handler(self, message_type: MessageType, handler: Handler) -> None:
        """Remove a handler added with :meth:`register_handler` (no error if absent)."""
        handlers = self._handlers.get(MessageType(message_type), [])
        if handler in handlers:
            handlers.remove(handler)

    # connection events ----------------------------------------------------------------

    def add_peer_listener(self, listener: PeerListener) -> Callable[[], None]:
        """Call ``listener(event)`` when a peer connects or disconnects; returns a remover.

        ``event`` is a :class:`~mesh.events.PeerConnected` (``identity``,
        ``address``, ``outbound``) or a :class:`~mesh.events.PeerDisconnected`
        (``identity``, ``code``, ``reason``). The listener may be a plain or a
        coroutine function; it runs in the event loop before the message
        handlers of the same moment (a peer's first message comes after its
        ``PeerConnected``). Exceptions are logged, never raised here.
        """
        return self._peer_fanout.add_listener(listener)

    def peer_events(self) -> AsyncIterator[PeerEvent]:
        """Iterate: a ``PeerConnected`` per peer connected now, then every change.

        Ends when the node closes (after the ``PeerDisconnected`` of its last
        peers). The queue behind it is bounded: a consumer more than 1024
        events behind loses the oldest.
        """
        return self._peer_fanout.events(self._up.values())

    def add_path_listener(self, listener: Callable[[PathChanged], None]) -> Callable[[], None]:
        """Call ``listener(event)`` when a connected peer moves to another path or the path
        in use goes silent (:class:`~mesh.events.PathChanged`); returns a remover.
        Exceptions are logged, never raised here."""
        return _listen(self._path_listeners, listener)

    # TURN ------------------------------------------------------------------------------

    def add_turn_listener(self, listener: Callable[[TurnEvent], None]) -> Callable[[], None]:
        """Call ``listener(event)`` for each event of the allocation :meth:`allocate_turn`
        made (``Allocated``, ``AllocationFailed``, ``Released``, permissions, channels);
        returns a remover. Exceptions are logged, never raised here."""
        return _listen(self._turn_listeners, listener)

    @property
    def turn_state(self) -> TurnState | None:
        """The allocation's state (None: the node has none)."""
        return self._turn.state if self._turn is not None else None

    @property
    def turn_address(self) -> tuple[str, int] | None:
        """Our relayed address on the TURN server (None: no allocation up)."""
        turn = self._turn
        if turn is None or turn.state is not TurnState.ALLOCATED or turn.relayed_address is None:
            return None
        host, port = turn.relayed_address[:2]
        return (str(host), int(port))

    async def allocate_turn(
        self, server: tuple[str, int], username: str, password: str
    ) -> Allocated:
        """Allocate a relayed address on the TURN ``server`` (an IP address and port) with
        time-limited credentials; returns it (with our address as the server saw it).

        Reuses the allocation already up. Raises :class:`PeerUnreachableError` when
        the server refuses or does not answer.
        """
        self._require_started()
        turn = self._turn
        if turn is not None and isinstance(turn.outcome, Allocated):
            if turn.state is TurnState.ALLOCATED:
                return turn.outcome
        if turn is None or turn.state in (TurnState.FAILED, TurnState.CLOSED):
            client = TurnClient(server, username, password)
            turn = self._turn = TurnPath(client, idle_release=self.config.turn_release_after)
            self._turn_ready = self._require_started().create_future()
            turn.allocate(self._now())
            self.attach_turn(turn, self._on_turn_event)  # flushes
        assert self._turn_ready is not None  # noqa: S101 - set with the allocation
        return await asyncio.shield(self._turn_ready)

    def permit_turn(self, hosts: Iterable[str]) -> None:
        """Let peers at these IP addresses reach us through the allocation (TURN
        permissions are per IP: the peer's server-reflexive address, its host one)."""
        if self._turn is not None:
            self._turn.permit(hosts, self._now())
            self._transmit()

    def update_turn_credentials(self, username: str, password: str) -> None:
        """Fresh TURN credentials for the allocation's later refreshes."""
        if self._turn is not None:
            self._turn.update_credentials(username, password)

    def release_turn(self) -> None:
        """Delete the allocation on the server (links through it end at their idle timeout)."""
        if self._turn is not None:
            self._turn.release(self._now())
            self._transmit()

    # connections --------------------------------------------------------------------

    async def connect(
        self,
        peer_ticket_token: str | None,
        endpoint: str | tuple[str, int],
        *,
        path: Path = "direct",
    ) -> PeerIdentity:
        """Open (or reuse) an authenticated direct connection; returns the peer.

        ``path="turn"``: ``endpoint`` is the peer's relayed address on a TURN server
        (a relay candidate): the connection is kept beside a direct one and carries
        the peer while that one is silent.

        Raises :class:`~protocol.errors.HandshakeError` when the peer fails
        authentication (or its ticket is invalid: the ``CryptoError`` is chained),
        :class:`~protocol.errors.PeerUnreachableError` when nothing answers within
        the dial timeout, a :class:`~protocol.errors.MeshError` with code
        ``BAD_REQUEST`` when ``endpoint`` is not ``host:port``.
        """
        loop = self._require_started()
        addr = await self._resolve(endpoint)
        if peer_ticket_token is not None:
            try:
                # a relayed address is no endpoint to redial the direct path at
                redial_at = addr if path == "direct" else None
                known = self.core.add_peer(peer_ticket_token, redial_at, self._now())
            except CryptoError as exc:
                raise HandshakeError(f"peer ticket rejected: {exc}") from exc
            if known.peer_id in self.core.peers and (
                path == "direct" or self.core.has_path(known.peer_id, path)
            ):
                return self.core.peers[known.peer_id]
        dial_id = self.core.connect(peer_ticket_token, addr, self._now(), path)
        fut: asyncio.Future[PeerIdentity] = loop.create_future()
        self._dials[dial_id] = fut
        self._transmit()
        return await fut

    async def punch(
        self,
        peer_ticket_token: str,
        endpoints: Iterable[tuple[str, int]],
        *,
        pace: float = PUNCH_PACE,
    ) -> PeerIdentity:
        """Open a direct connection through NATs: dial every endpoint, best first.

        The peer the lobby paired us with dials our candidates at the same time.
        Each dial's QUIC Initial is the punch packet: it opens our NAT's mapping
        towards that address, and aioquic resends it (0.2, 0.6, 1.4, 3 s after the
        first) until the peer's own packets have opened its side, within
        ``dial_timeout``. Dials leave ``pace`` seconds apart (a burst of Initials to
        one NAT is what rate limits drop). The first that completes the
        authenticated handshake is the link; our dials nobody answered are then
        closed, and when both sides' dials got through the simultaneous-dial
        tie-break keeps the same one on both. Returns the peer at once when it is
        already connected. Raises like :meth:`connect` (the error of the last dial
        when none connects); endpoints must be IP addresses.
        """
        loop = self._require_started()
        identity = self.add_peer(peer_ticket_token)
        pid = identity.peer_id
        dials: list[asyncio.Future[PeerIdentity]] = []
        for addr in dict.fromkeys((str(host), int(port)) for host, port in endpoints):
            if pid in self.core.peers:
                break
            if dials:
                await asyncio.sleep(pace)
                self._require_started()
            dial_id = self.core.connect(peer_ticket_token, addr, self._now())
            fut: asyncio.Future[PeerIdentity] = loop.create_future()
            fut.add_done_callback(retrieve)
            self._dials[dial_id] = fut
            dials.append(fut)
            self._transmit()
        if pid in self.core.peers:
            return self.core.peers[pid]
        if not dials:
            raise PeerUnreachableError("no endpoint to punch", details={"peer_id": pid})
        return await first_to_connect(dials)

    def add_peer(
        self, peer_ticket_token: str, endpoint: tuple[str, int] | None = None
    ) -> PeerIdentity:
        """Remember a peer (verified ticket) without dialling: sends dial or relay lazily.

        ``endpoint`` must be an IP address tuple here (use :meth:`connect` for names).
        """
        try:
            return self.core.add_peer(peer_ticket_token, endpoint, self._now())
        except CryptoError as exc:
            raise HandshakeError(f"peer ticket rejected: {exc}") from exc

    def disconnect_peer(self, target: Target) -> bool:
        """Close the direct connection to a peer; handlers get PLAYER_LEFT_AREA."""
        identity = self.core.known_peer(target)
        if identity is None:
            return False
        done = self.core.disconnect_peer(identity.peer_id, self._now())
        self._transmit()
        return done

    def set_location(self, location_id: int | None) -> None:
        """Our location: peers elsewhere are dropped first when over ``max_connections``."""
        self.core.set_location(location_id, self._now())
        self._transmit()

    def set_peer_location(self, target: Target, location_id: int) -> None:
        """A peer's location as the lobby reports it (movement updates also tell it)."""
        self.core.set_peer_location(target, location_id, self._now())
        self._transmit()

    def receive_relayed(self, data: bytes) -> None:
        """Hand over one envelope the relay delivered to us (bad ones are dropped)."""
        self.core.receive_relayed(data, self._now())
        self._transmit()

    # sending -------------------------------------------------------------------------

    async def send_message(self, target: Target, message: BaseMessage) -> SendResult:
        """Deliver ``message`` reliably, exactly once and in order, to one peer.

        Resolves when the peer acknowledged it, with the path of the
        acknowledgement (``"direct"`` or ``"relay"``). Calls are delivered in the
        order they were made. Raises :class:`~protocol.errors.PeerUnreachableError`
        when the peer is unknown, or no path delivered it within ``send_timeout``
        (a timed-out message may still arrive later, once);
        :class:`~protocol.errors.InvalidMessageError` for a type outside
        :data:`mesh.config.PEER_MESSAGE_TYPES`;
        :class:`~protocol.errors.MessageTooLargeError` over 16 KiB of JSON.
        """
        loop = self._require_started()
        if message.timestamp is None:
            message = message.model_copy(update={"timestamp": time.time()})
        handle = self.core.send_reliable(target, message, self._now())
        fut: asyncio.Future[Path] = loop.create_future()
        self._sends[handle] = fut
        self._transmit()
        path = await fut
        return SendResult(message.message_id, path)

    async def send_whisper(
        self, target: Target, content: str, *, target_name: str | None = None
    ) -> SendResult:
        """Whisper ``content`` to one peer (character id or peer id)."""
        me = self._me()
        peer = self.core.known_peer(target)
        message = WhisperMessage(
            sender_id=me.character_id,
            sender_name=me.character_name,
            content=content,
            target_id=peer.character_id if peer else (target if isinstance(target, int) else None),
            target_name=target_name or (peer.character_name if peer else None),
        )
        return await self.send_message(target, message)

    async def send_party_chat(
        self, members: Iterable[Target], content: str, *, party_id: str | None = None
    ) -> PartySendResult:
        """Send one party chat message to every member (ourselves skipped), in parallel."""
        me = self._me()
        message = PartyChatMessage(
            sender_id=me.character_id,
            sender_name=me.character_name,
            content=content,
            party_id=party_id,
            timestamp=time.time(),
        )
        targets = [m for m in dict.fromkeys(members) if m not in (me.character_id, me.peer_id)]
        results = await asyncio.gather(
            *(self.send_message(t, message) for t in targets), return_exceptions=True
        )
        out = PartySendResult(message.message_id)
        for target, result in zip(targets, results, strict=True):
            if isinstance(result, SendResult):
                out.paths[target] = result.path
            elif isinstance(result, MeshError):
                out.failed[target] = result
            elif isinstance(result, BaseException):
                raise result
        return out

    def send_position_update(
        self,
        position: VecLike,
        velocity: VecLike | None = None,
        *,
        location_id: int,
    ) -> PositionUpdateMessage:
        """Queue our position for the next movement tick (DATAGRAM, newest wins).

        Returns the update queued (its ``seq`` increments with wrap-around).
        """
        loop = self._loop
        if loop is None or self._transport is None or self._closed:
            loop = self._require_started()  # raises
        now = loop.time()  # _now's work in line, as every update comes here
        moved = time.time() - now - self._wall_offset
        if moved > _WALL_OFFSET_SLACK or moved < -_WALL_OFFSET_SLACK:
            now = self._now()  # a wall-clock step: _now moves the core's offset
        try:  # _me in line (every update comes here), at this now: no second clock read
            me = self._auth.own_identity(now=now + self._wall_offset)
        except CryptoError as exc:
            raise NotConnectedError(f"our own credential is not valid: {exc}") from exc
        self._seq = next_seq(self._seq)
        update = create_position_update(
            me.character_id,
            location_id,
            position,
            velocity if velocity is not None else _STILL,
            sent_at=now,
            seq=self._seq,
        )
        core = self.core
        tick_at = core.queue_position(update, now)
        if tick_at <= now:
            # the tick is due at once (mesh.datagrams: its slot is near): run it before the
            # flush rather than flush, find it due and flush again; only the tick, not the
            # whole handle_timer walk: _transmit reads the timer and runs whatever else is due
            if tick_at + 1e-6 > now:
                now = tick_at + 1e-6
            core.tick_movement(now)
        self._transmit(now)
        return update

    # internals ---------------------------------------------------------------------------

    def _require_started(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._transport is None or self._closed:
            raise NotConnectedError("the peer node is not started (or closed)")
        return self._loop

    def _now(self) -> float:
        """The loop clock for the core, keeping its Unix-time offset current (to within
        :data:`_WALL_OFFSET_SLACK`).

        The core's offset is set only when it moved (a wall-clock step; NTP slew moves
        it by microseconds), sparing two calls per read. The two hot callers,
        :meth:`send_position_update` and :meth:`_on_datagrams`, make the same check in
        line and call this only when the offset moved."""
        loop = self._loop
        if loop is None or self._transport is None or self._closed:
            self._require_started()  # raises
        assert loop is not None  # noqa: S101 - for the type checker: checked just above
        now = loop.time()
        offset = time.time() - now
        moved = offset - self._wall_offset
        if moved > _WALL_OFFSET_SLACK or moved < -_WALL_OFFSET_SLACK:
            self._wall_offset = offset
            self.core.wall_offset = offset
        return now

    def _me(self, wall: float | None = None) -> PeerIdentity:
        """Our own identity, its credential checked at Unix time ``wall`` (None: now)."""
        try:
            return self._auth.own_identity(now=time.time() if wall is None else wall)
        except CryptoError as exc:
            raise NotConnectedError(f"our own credential is not valid: {exc}") from exc

    async def _resolve(self, endpoint: str | tuple[str, int]) -> Address:
        if isinstance(endpoint, str):
            host, sep, port_text = endpoint.rpartition(":")
            if not sep or not port_text.isdigit() or int(port_text) > 65535:
                raise MeshError(
                    f"endpoint must be host:port (port 0-65535), got {endpoint!r}",
                    code=ErrorCode.BAD_REQUEST,
                )
            host = host.strip("[]")
            port = int(port_text)
        else:
            host, port = endpoint
        loop = self._require_started()
        infos = await loop.getaddrinfo(host, port, family=self._family, type=socket.SOCK_DGRAM)
        if not infos:
            raise PeerUnreachableError(f"cannot resolve {host!r}")
        sockaddr = infos[0][4]
        return (str(sockaddr[0]), int(sockaddr[1]), *sockaddr[2:])

    def _on_datagrams(self, batch: Batch) -> None:
        """Every datagram the socket had waiting: all into the core, then one flush."""
        loop = self._loop
        if loop is None or self._closed:
            return
        now = loop.time()  # _now's work in line, as every batch comes here
        moved = time.time() - now - self._wall_offset
        if moved > _WALL_OFFSET_SLACK or moved < -_WALL_OFFSET_SLACK:
            now = self._now()  # a wall-clock step: _now moves the core's offset
        receive = self.core.receive_datagram
        sockets = self._sockets
        not_quic = sockets.receive_datagram  # STUN and TURN take theirs first
        # no TURN server: QUIC is told by its first byte alone (demux.route), in line
        quic_by_byte = sockets.turn_server is None  # nothing below attaches one
        turn = self._turn
        for data, addr in batch:
            if (quic_by_byte and data and data[0] >= 64) or not not_quic(data, addr, now):
                receive(data, addr, now)
            elif turn is not None:  # what peers sent us through our TURN allocation
                for relayed, route in turn.relayed():
                    receive(relayed, route, now)
        self._transmit(now)

    def _on_timer(self) -> None:
        self._timer = None
        if self._loop is None or self._closed:
            return
        # uvloop fires early; and 1 us past the deadline, since aioquic's loss timer
        # recomputes (sent + delay) - delay, which float rounding can leave just short
        now = max(self._now(), (self._timer_at or 0.0) + 1e-6)  # _now: expiry runs here
        self._timer_at = None
        self._handle_timer(now)
        self._transmit(now)

    def _handle_timer(self, now: float) -> None:
        self.core.handle_timer(now)
        if not self._sockets.idle:
            self._sockets.handle_timer(now)

    def _transmit(self, now: float | None = None, *, inline: bool = False) -> None:
        """Flush the core's datagrams, dispatch its events, re-arm the timer (or run it now
        when it is already due and ``inline`` is False).

        The core's ``wall_offset`` is not refreshed here: every path that drives the core
        (:meth:`_now`, the read, the timer) did so just before, and it moves only with a
        wall-clock step."""
        loop, transport = self._loop, self._transport
        if loop is None or transport is None:
            return
        when = loop.time() if now is None else now
        core = self.core
        sendto = transport.sendto
        turn = self._turn
        for data, addr in core.datagrams_to_send(when):
            if type(addr) is TurnRoute:  # final: no subclass; a socket address is a tuple
                if turn is not None:  # else dropped, as UDP may: the link times out
                    turn.send(addr, data, when)
            else:
                sendto(data, addr)
        if self._core_events:  # none on most flushes: spare the call
            self._dispatch()
        # STUN and TURN only when either has anything (a handler above may have started a
        # Binding): without them a flush is the core's alone
        sockets = self._sockets
        busy = not sockets.idle
        if busy:
            for data, addr in sockets.datagrams_to_send(when):
                sendto(data, addr)
            self._shared.dispatch()
        if self._closed:
            return
        timer_at = core.get_timer()
        if busy and (sockets_at := sockets.get_timer()) is not None:
            if timer_at is None or sockets_at < timer_at:
                timer_at = sockets_at
        if timer_at is not None and timer_at <= when and not inline:
            # due already (a movement tick just queued, most often): run it now rather than
            # through a loop timer one iteration later; once per flush, so a timer that stays
            # due (float rounding in aioquic) still goes through the loop
            at = max(when, timer_at + 1e-6)
            self._handle_timer(at)
            self._transmit(at, inline=True)
            return
        if timer_at != self._timer_at or self._timer is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = timer_at
            if timer_at is not None:
                self._timer = loop.call_at(timer_at, self._on_timer)

    def _dispatch(self) -> None:
        events = self._core_events
        while events:
            event = events.popleft()
            if type(event) is PositionReceived:  # the hot one: movement
                handlers = self._position_handlers
                if handlers:  # _call_handlers, in line
                    notify(
                        handlers,
                        event.update,
                        log=logger,
                        what="handler",
                        spawn=self._spawn,
                        label=_POSITION_UPDATE,
                    )
            elif isinstance(event, MessageDelivered):
                self._call_handlers(event.message)
            elif isinstance(event, SendSettled):
                self._settle_send(event)
            elif isinstance(event, PeerConnected):
                if event.identity.peer_id not in self._up:  # not a dial joining a live one
                    self._up[event.identity.peer_id] = event
                    self._peer_fanout.emit(event)
                self._resolve_dial(event.dial_id, event.identity, None)
            elif isinstance(event, DialFailed):
                self._on_dial_failed(event)
            elif isinstance(event, PeerDisconnected):
                if self._up.pop(event.identity.peer_id, None) is not None:
                    self._peer_fanout.emit(event)
                self._call_handlers(
                    PlayerLeftAreaMessage(
                        character_id=event.identity.character_id,
                        character_name=event.identity.character_name,
                        location_id=event.location_id or self.core.location_id or 0,
                        to_location_id=event.to_location_id,
                    )
                )
            elif isinstance(event, RelayRequest):
                self._spawn(self._relay_send(event))
            elif isinstance(event, PathChanged):
                notify(self._path_listeners, event, log=logger, what="path listener", spawn=None)

    def _on_turn_event(self, event: TurnEvent) -> None:
        """Settle :meth:`allocate_turn`'s wait; forget an allocation that ended."""
        turn, ready = self._turn, self._turn_ready
        if turn is None:
            return
        if ready is not None and not ready.done():
            if isinstance(event, Allocated):
                ready.set_result(event)
            elif isinstance(event, AllocationFailed | Released):
                reason = event.reason if isinstance(event, AllocationFailed) else "released"
                ready.set_exception(PeerUnreachableError(f"TURN allocation failed: {reason}"))
        if turn.state in (TurnState.FAILED, TurnState.CLOSED):
            logger.info("TURN allocation on %s ended (%s)", turn.server, turn.state.value)
            self._turn = None
            self._shared.attach_turn(None, None)
        notify(self._turn_listeners, event, log=logger, what="TURN listener", spawn=None)

    def _settle_send(self, event: SendSettled) -> None:
        fut = self._sends.pop(event.handle, None)
        if fut is None or fut.done():
            return
        if event.error is not None:
            fut.set_exception(event.error)
        elif event.path is not None:
            fut.set_result(event.path)

    def _resolve_dial(
        self, dial_id: int | None, identity: PeerIdentity | None, error: MeshError | None
    ) -> None:
        fut = self._dials.pop(dial_id, None) if dial_id is not None else None
        if fut is None or fut.done():
            return
        if identity is not None:
            fut.set_result(identity)
        elif error is not None:
            fut.set_exception(error)

    def _on_dial_failed(self, event: DialFailed) -> None:
        connected = self.core.peers.get(event.peer_id or "")
        if connected is not None:
            self._resolve_dial(event.dial_id, connected, None)
            return
        error: MeshError
        if event.code in _HANDSHAKE_CODES:
            error = HandshakeError(f"handshake failed: {event.reason}")
        else:
            error = PeerUnreachableError(f"could not connect: {event.reason}")
        error.details["close_code"] = event.code
        self._resolve_dial(event.dial_id, None, error)

    def _call_handlers(self, message: BaseMessage) -> None:
        handlers = self._handlers.get(message.type, ())
        # the message type, not the message, in the log: private chat stays out of it
        notify(handlers, message, log=logger, what="handler", spawn=self._spawn, label=message.type)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay_send(self, request: RelayRequest) -> None:
        relay = self._relay
        if relay is None:
            return
        try:
            if isinstance(relay, RelayTransport):
                await relay.send(request.character_id, request.data)
            else:
                await relay(request.character_id, request.data)
        except Exception as exc:  # a relay failure is retried by the reliable layer
            logger.warning("relay to character %s failed: %s", request.character_id, exc)


def _listen(
    listeners: list[Callable[[E], None]], listener: Callable[[E], None]
) -> Callable[[], None]:
    """Add ``listener``; return what removes it (once; later calls do nothing)."""
    listeners.append(listener)

    def remove() -> None:
        if listener in listeners:
            listeners.remove(listener)

    return remove
