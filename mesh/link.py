"""One QUIC connection of the node, its life as one explicit state, and its snapshot (sans-I/O).

A :class:`Link` is one aioquic connection plus what the mesh keeps about it:
the peer handshake, the control stream, the authenticated peer once known.
Its life is one :class:`LinkState` value; :meth:`Link.transition` allows only
the moves drawn below and raises :class:`LinkStateError` (a bug in the core,
never a peer's doing) for any other::

                    authenticated, won                 peer gone, dropped,
        HANDSHAKING ─────────────────────────► ACTIVE ─── evicted, replaced ──► CLOSING
            │   │   authenticated, lost the duplicate tie-break                    ▲
            │   └──────────────────────────────────────────────────────────────────┘
            │ failed, timed out, refused                                            │
            ▼                                                                       │
        REJECTED                                                                    │
            │                                                                       │
            └──────────────► TERMINATED ◄───────────────────────────────────────────┘
                    (aioquic's ConnectionTerminated, from any state: drained or lost)

* ``HANDSHAKING``: QUIC and the peer handshake are under way (counts against
  ``max_handshakes``; a dial's deadline runs).
* ``ACTIVE``: authenticated: the link that carries its peer, or its spare on the other path kind.
* ``REJECTED``: closed by us before the peer was authenticated; it still counts
  against ``max_handshakes`` until aioquic has drained it.
* ``CLOSING``: closed by us after authentication; waiting for aioquic to drain it.
* ``TERMINATED``: aioquic is done with it; it is out of every table.

Where a link's datagrams go is its :data:`Route`: a socket address (the peer
reached straight from our socket), or a :class:`TurnRoute` (the peer reached
through our own TURN allocation; the driver hands those datagrams to its TURN
client). Its :attr:`Link.path` is ``"turn"`` for a TURN route, and for a dial
to a peer's relayed address (the peer's allocation carries it); else ``"direct"``.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from mesh import _quicshim
from mesh.auth import PeerIdentity
from mesh.handshake import CloseCode, Handshake
from mesh.paths import Address, Path, Route, TurnRoute, route_address
from mesh.streams import KIND_CONTROL, KIND_DATA, FrameDecoder, encode_frame
from protocol.codec import serialize_bytes
from protocol.errors import MeshError
from protocol.messages.base import BaseMessage

__all__ = [
    "TRANSITIONS",
    "Address",
    "Link",
    "LinkInfo",
    "LinkState",
    "LinkStateError",
    "Route",
    "TurnRoute",
    "route_address",
]

logger = logging.getLogger("mesh.link")


class LinkState(enum.Enum):
    """Where a link is in its life (see the module docstring)."""

    HANDSHAKING = "handshaking"
    ACTIVE = "active"
    REJECTED = "rejected"
    CLOSING = "closing"
    TERMINATED = "terminated"


TRANSITIONS: dict[LinkState, frozenset[LinkState]] = {
    LinkState.HANDSHAKING: frozenset(
        {LinkState.ACTIVE, LinkState.REJECTED, LinkState.CLOSING, LinkState.TERMINATED}
    ),
    LinkState.ACTIVE: frozenset({LinkState.CLOSING, LinkState.TERMINATED}),
    LinkState.REJECTED: frozenset({LinkState.TERMINATED}),
    LinkState.CLOSING: frozenset({LinkState.TERMINATED}),
    LinkState.TERMINATED: frozenset(),
}
"""The moves a link may make: state -> the states it may go to next."""

_UNAUTHENTICATED = frozenset({LinkState.HANDSHAKING, LinkState.REJECTED})


class LinkStateError(MeshError):
    """A link was asked to make a move :data:`TRANSITIONS` does not allow: a bug in the core."""


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """A read-only snapshot of one link, for tests, logs and tools (:meth:`Link.info`)."""

    state: LinkState
    address: Route
    path: Path
    outbound: bool
    peer_id: str | None
    character_id: int | None
    expected_peer_id: str | None
    close_code: int | None
    connection_ids: int


class Link:
    """A QUIC connection, its handshake, its control stream and its peer once known."""

    def __init__(
        self,
        quic: _quicshim.MeshQuicConnection,
        addr: Route,
        *,
        is_client: bool,
        path: Path = "direct",
        handshake: Handshake,
        now: float,
        dial_deadline: float,
        dial_id: int | None = None,
        expected_peer_id: str | None = None,
    ) -> None:
        self.quic = quic
        self.addr = addr
        self.path: Path = "turn" if isinstance(addr, TurnRoute) else path
        """``"turn"`` or ``"direct"`` (see the module docstring); never changes."""
        self.is_client = is_client
        self.handshake = handshake
        self.dial_id = dial_id
        self.dial_deadline: float | None = dial_deadline
        self.expected_peer_id = expected_peer_id
        self.cids: set[bytes] = set()
        self.decoder = FrameDecoder()
        self.stream_id: int | None = quic.get_next_available_stream_id() if is_client else None
        self.identity: PeerIdentity | None = None
        self.state = LinkState.HANDSHAKING
        self.close_code: int | None = None
        self.next_ping_at: float | None = None
        self.ack_divisor = 1
        """The movement tick divisor its ACK delay was tuned for (:mod:`mesh.datagrams`)."""
        self.last_activity = now
        self.last_rx = now
        # path liveness (authenticated links): a PING when nothing came for probe_interval,
        # so a silent path is told from a quiet one (mesh.core: path_silence)
        self.probe_interval: float | None = None
        self.last_probe = now
        self.spare_since: float | None = None
        """Since when this ``ACTIVE`` link has been its peer's spare (None: in use)."""
        # traffic of the connection, for mesh.quality (the core counts the bytes)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.losses = _quicshim.count_lost_packets(quic)

    # state --------------------------------------------------------------------------

    def transition(self, new: LinkState) -> None:
        """Move to ``new``; raises :class:`LinkStateError` unless :data:`TRANSITIONS` allows it."""
        if new not in TRANSITIONS[self.state]:
            raise LinkStateError(f"link {self.describe()}: {self.state.name} -> {new.name}")
        self.state = new

    @property
    def is_open(self) -> bool:
        """Handshaking or active: neither we nor aioquic ended it."""
        state = self.state  # by identity: a frozenset lookup hashes the Enum in Python
        return state is LinkState.ACTIVE or state is LinkState.HANDSHAKING

    @property
    def counts_as_handshake(self) -> bool:
        """Holds a ``max_handshakes`` slot: not authenticated, not yet drained."""
        return self.state in _UNAUTHENTICATED

    @property
    def peer_id(self) -> str | None:
        """The authenticated peer's id (None before authentication)."""
        return self.identity.peer_id if self.identity is not None else None

    def authenticate(
        self,
        identity: PeerIdentity,
        now: float,
        keepalive_interval: float,
        probe_interval: float | None = None,
    ) -> None:
        """The peer handshake finished: remember the peer, stop the dial clock, start pings
        (keepalives every ``keepalive_interval``; a probe when nothing came for
        ``probe_interval``).

        The link stays ``HANDSHAKING`` until the table decides between
        :meth:`activate` and :meth:`close` (the duplicate tie-break).
        """
        self.identity = identity
        self.dial_deadline = None
        self.next_ping_at = now + keepalive_interval
        self.probe_interval = probe_interval
        self.last_probe = now

    def activate(self) -> None:
        """Become the link that carries its peer (or its spare)."""
        self.transition(LinkState.ACTIVE)

    def terminated(self) -> None:
        """aioquic reported the connection's end."""
        self.transition(LinkState.TERMINATED)

    # sending ------------------------------------------------------------------------

    def send_control(self, message: BaseMessage) -> None:
        """Send a protocol message in a CONTROL frame on the control stream."""
        self._send(encode_frame(KIND_CONTROL, serialize_bytes(message)))

    def send_data(self, body: bytes) -> None:
        """Send a DATA frame body on the control stream."""
        self._send(encode_frame(KIND_DATA, body))

    def _send(self, frame: bytes) -> None:
        if self.stream_id is None or not self.is_open:
            return
        self.quic.send_stream_data(self.stream_id, frame)

    def close(self, code: CloseCode, reason: str) -> None:
        """Close the QUIC connection with an application error code.

        Idempotent: a link already closed (by us or aioquic) is left alone.
        ``REJECTED`` before authentication, ``CLOSING`` after.
        """
        if not self.is_open:
            return
        self.transition(LinkState.CLOSING if self.identity is not None else LinkState.REJECTED)
        self.close_code = int(code)
        self.quic.close(error_code=int(code), reason_phrase=reason[:200])

    # timers -------------------------------------------------------------------------

    def timer(self) -> float | None:
        """When this link needs :meth:`handle_timer` (QUIC, dial deadline or keepalive)."""
        # read after every flush that touched the link: states compared by identity, the
        # probe time inlined (probe_at), no enum hashing
        state = self.state
        # the connection's timer is None before connect, and cached until a call changes it
        # (read here without the call while valid: after every flush, once per update)
        at = None
        if state is not LinkState.TERMINATED:
            quic = self.quic
            at = quic._mesh_timer if quic._mesh_timer_valid else quic.get_timer()
        active = state is LinkState.ACTIVE
        if active or state is LinkState.HANDSHAKING:
            deadline = self.dial_deadline
            if deadline is not None and not active and (at is None or deadline < at):
                at = deadline
            ping = self.next_ping_at
            if ping is not None and (at is None or ping < at):
                at = ping
            if active and self.probe_interval is not None:
                last = self.last_rx if self.last_rx > self.last_probe else self.last_probe
                probe = last + self.probe_interval
                if at is None or probe < at:
                    at = probe
        return at

    def probe_at(self) -> float | None:
        """When to probe this link next (``ACTIVE`` links: ``probe_interval`` after the last
        datagram heard or the last probe, whichever is later)."""
        if self.probe_interval is None or self.state is not LinkState.ACTIVE:
            return None
        return max(self.last_rx, self.last_probe) + self.probe_interval

    # inspection ---------------------------------------------------------------------

    def info(self) -> LinkInfo:
        """A snapshot of this link."""
        identity = self.identity
        return LinkInfo(
            state=self.state,
            address=self.addr,
            path=self.path,
            outbound=self.is_client,
            peer_id=identity.peer_id if identity is not None else None,
            character_id=identity.character_id if identity is not None else None,
            expected_peer_id=self.expected_peer_id,
            close_code=self.close_code,
            connection_ids=len(self.cids),
        )

    def describe(self) -> str:
        """Short text for log lines: peer id (or address) and role."""
        who = self.identity.peer_id[:12] if self.identity is not None else "?"
        role = "out" if self.is_client else "in"
        host, port = route_address(self.addr)[:2]
        via = "/turn" if self.path == "turn" else ""
        return f"{who}@{host}:{port}/{role}{via}"
