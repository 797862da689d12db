"""The link table: every connection of the node, how a datagram finds its connection, which
link carries each peer, and where links are made (sans-I/O).

:class:`LinkTable` routes an incoming datagram by its destination connection id
(:meth:`LinkTable.route`), creates the server side of a connection for an
unknown one (:meth:`LinkTable.accept_initial`, the only place an unsolicited
packet turns into state, and only once :mod:`mesh.gate` admits it: QUIC Retry
under pressure, per-source limits) and the client side of a dial (:meth:`LinkTable.dial`),
keeps the ``ACTIVE`` link that carries each peer (:meth:`LinkTable.direct`) and,
when the peer is reached over both a direct and a TURN path, the other one as
its spare (:attr:`LinkTable.spares`; :meth:`LinkTable.swap` exchanges them), and
tracks which links may have something to send (:attr:`LinkTable.touched`) or a
changed timer, so a flush or a timer read touches only those
(:class:`mesh._quicshim.MeshQuicConnection` marks them).

The table holds links; what a link *means* (the peer handshake, the
tie-break, what travels on it) is decided by :class:`mesh.core.MeshCore` and
:class:`mesh.admission.Admission`.
"""

from __future__ import annotations

import itertools
import ssl
from collections.abc import Iterator

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicHeader

from mesh import _quicshim
from mesh.certs import ALPN, make_certificate
from mesh.context import CoreContext
from mesh.gate import Admit, Drop, InitialGate
from mesh.handshake import Handshake
from mesh.link import Link, LinkState, LinkStateError
from mesh.paths import Path, Route

__all__ = ["LinkTable"]


class LinkTable:
    """Links by connection id and by peer; where links are created (see the module docstring)."""

    def __init__(self, ctx: CoreContext) -> None:
        self._ctx = ctx
        identity = ctx.identity
        self._server_config = self._quic_config(is_client=False)
        self._server_config.certificate = make_certificate(
            identity.signing_key, common_name=identity.peer_id
        )
        self._server_config.private_key = identity.signing_key
        self.gate = InitialGate(
            ctx.config,
            versions=self._server_config.supported_versions,
            in_progress=self._handshaking_on,
        )
        """Admits, retries or drops Initials to unknown connection ids (its ``stats``)."""
        self._links: set[Link] = set()
        self._cid_end = 1 + ctx.config.connection_id_length
        self._by_cid: dict[bytes, Link] = {}
        self.directs: dict[str, Link] = {}
        """Peer id -> the ``ACTIVE`` link that carries it now (on a direct or a TURN path).
        Read it; only this table changes it."""
        self.spares: dict[str, Link] = {}
        """Peer id -> its other ``ACTIVE`` link, on the other path kind (a peer has one
        only while it has a link in :attr:`directs`). Read it; only this table changes it."""
        self.directs_changes = 0
        """Counts changes of :attr:`directs` (a cache of something about them is stale when
        this moved)."""
        self.touched: set[Link] = set()
        """Links that may have something to send (their connection marks them, see
        :meth:`mesh._quicshim.MeshQuicConnection.watch`); the core's flush pops them until
        none is left. A plain set rather than an iterator over it: a flush is two calls
        fewer."""
        self._timer_stale: set[Link] = set()  # links whose timer may have changed
        self._timers: dict[Link, float] = {}  # links with a timer: when
        self._next_timer: float | None = None  # min(self._timers.values())
        self._dial_ids = itertools.count(1)

    # lookups ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Link]:
        """Every link not yet terminated (a copy: the table may change meanwhile)."""
        return iter(list(self._links))

    def route(self, dcid: bytes) -> Link | None:
        """The link a datagram with destination connection id ``dcid`` belongs to."""
        return self._by_cid.get(dcid)

    def route_short(self, data: bytes) -> Link | None:
        """The link of a short-header (1-RTT) datagram to one of our connection ids, read
        without parsing a header; None for anything else (parse it, then :meth:`route`)."""
        # RFC 9000 17.3.1: header form 0, fixed bit 1, then the destination connection id
        if len(data) > self._cid_end and data[0] & 0xC0 == 0x40:
            return self._by_cid.get(data[1 : self._cid_end])
        return None

    def direct(self, peer_id: str) -> Link | None:
        """The ``ACTIVE`` link that carries ``peer_id`` now, if there is one."""
        return self.directs.get(peer_id)

    def active(self, peer_id: str, path: Path) -> Link | None:
        """``peer_id``'s ``ACTIVE`` link on ``path`` (in use or spare), if there is one."""
        for link in (self.directs.get(peer_id), self.spares.get(peer_id)):
            if link is not None and link.path == path:
                return link
        return None

    def handshaking(self) -> int:
        """Links holding a ``max_handshakes`` slot."""
        return sum(1 for link in self._links if link.counts_as_handshake)

    def _handshaking_on(self, cid: bytes) -> bool:
        """The connection ``cid`` names is still handshaking (the gate's per-source count)."""
        link = self._by_cid.get(cid)
        return link is not None and link.counts_as_handshake

    def dialing(self, peer_id: str, path: Path | None = None) -> bool:
        """A dial to ``peer_id`` (on ``path``, when given) is under way."""
        return any(
            li.expected_peer_id == peer_id
            and li.state is LinkState.HANDSHAKING
            and (path is None or li.path == path)
            for li in self._links
        )

    # making links -------------------------------------------------------------------

    def accept_initial(self, header: QuicHeader, size: int, addr: Route, now: float) -> Link | None:
        """The server side of a new connection for a datagram with an unknown DCID, or None.

        :attr:`gate` decides first: only a full-size client Initial of a version
        we speak, within the handshake slots and its source's share, with a valid
        Retry token when under pressure, makes a link; a Retry it answers with
        waits in :meth:`InitialGate.datagrams_to_send`; anything else is dropped
        (counted in ``dropped_packets``).
        """
        verdict = self.gate.screen(header, size, addr, now, handshakes=self.handshaking())
        if isinstance(verdict, Drop):
            self._ctx.stats["dropped_packets"] += 1
        if not isinstance(verdict, Admit):
            return None  # dropped, or answered by a Retry: no state kept
        config = self._ctx.config
        odcid = header.destination_cid
        quic = _quicshim.MeshQuicConnection(
            configuration=self._server_config,
            original_destination_connection_id=verdict.original_dcid,
            retry_source_connection_id=verdict.retry_scid,
        )
        handshake = Handshake(is_client=False, identity=self._ctx.identity, auth=self._ctx.auth)
        link = Link(
            quic,
            addr,
            is_client=False,
            handshake=handshake,
            now=now,
            dial_deadline=now + config.dial_timeout,
        )
        self._add(link, quic)
        self.register_cid(link, odcid)
        self.register_cid(link, quic.host_cid)
        return link

    def dial(self, addr: Route, peer_id: str | None, now: float, path: Path = "direct") -> int:
        """Open a connection to ``addr`` (expecting ``peer_id`` there, if given); returns
        the dial id its ``PeerConnected`` or ``DialFailed`` event will carry.

        ``path="turn"``: ``addr`` is the peer's relayed address on a TURN server (a
        :class:`~mesh.paths.TurnRoute` is ``"turn"`` whatever ``path`` says)."""
        ctx = self._ctx
        dial_id = next(self._dial_ids)
        quic = _quicshim.MeshQuicConnection(configuration=self._quic_config(is_client=True))
        handshake = Handshake(
            is_client=True,
            identity=ctx.identity,
            auth=ctx.auth,
            expected_peer_id=peer_id,
            server_key=lambda: _quicshim.peer_certificate_ed25519(quic),
        )
        link = Link(
            quic,
            addr,
            is_client=True,
            handshake=handshake,
            now=now,
            dial_deadline=now + ctx.config.dial_timeout,
            dial_id=dial_id,
            expected_peer_id=peer_id,
            path=path,
        )
        self._add(link, quic)
        self.register_cid(link, quic.host_cid)
        quic.connect(addr, now=now)
        return dial_id

    # changes ------------------------------------------------------------------------

    def register_cid(self, link: Link, cid: bytes) -> None:
        """Datagrams to ``cid`` belong to ``link`` (aioquic issued it)."""
        self._by_cid[cid] = link
        link.cids.add(cid)

    def retire_cid(self, link: Link, cid: bytes) -> None:
        """aioquic retired ``cid`` of ``link``."""
        if self._by_cid.get(cid) is link:
            del self._by_cid[cid]
        link.cids.discard(cid)

    def set_direct(self, link: Link) -> None:
        """Make the authenticated ``link`` its peer's direct link (``ACTIVE``), in place of
        any other (the caller has closed that one)."""
        pid = link.peer_id
        if pid is None:  # pragma: no cover - only authenticated links get here
            raise LinkStateError(f"link {link.describe()}: direct before authentication")
        link.activate()
        self.directs[pid] = link
        self.directs_changes += 1

    def set_spare(self, link: Link) -> None:
        """Keep the authenticated ``link`` as its peer's spare (``ACTIVE``), in place of any
        other spare (the caller has closed that one); the peer has a link in use."""
        pid = link.peer_id
        if pid is None or pid not in self.directs:  # pragma: no cover - the core checks
            raise LinkStateError(f"link {link.describe()}: spare without a link in use")
        link.activate()
        self.spares[pid] = link

    def swap(self, peer_id: str) -> Link:
        """The spare of ``peer_id`` carries it from now on, the link in use becomes the
        spare; returns the new link in use."""
        spare = self.spares[peer_id]
        self.spares[peer_id] = self.directs[peer_id]
        self.directs[peer_id] = spare
        self.directs_changes += 1
        return spare

    def unset_direct(self, link: Link) -> Link | None:
        """``link`` no longer carries its peer (it is closing or gone); returns the link
        that carries the peer now: its spare, promoted when ``link`` was in use (None: the
        peer has no link left)."""
        pid = link.peer_id
        if pid is None:
            return None
        if self.spares.get(pid) is link:
            del self.spares[pid]
        elif self.directs.get(pid) is link:
            spare = self.spares.pop(pid, None)
            if spare is None:
                del self.directs[pid]
            else:
                self.directs[pid] = spare
            self.directs_changes += 1
        return self.directs.get(pid)

    def remove(self, link: Link) -> None:
        """aioquic is done with ``link``: forget it and its connection ids."""
        self._links.discard(link)
        for cid in link.cids:
            if self._by_cid.get(cid) is link:
                del self._by_cid[cid]

    # flushing and timers ------------------------------------------------------------

    def next_timer(self) -> float | None:
        """The soonest timer of any link (QUIC, dial deadline or keepalive).

        Links are re-read only where a connection was touched (or :meth:`retime` was
        called) since the last read: the driver calls this after every flush, and a
        crowded node re-reads one or two links each time, the minimum over all of them
        only when the link that held it moved later or went."""
        stale = self._timer_stale
        if not stale:
            return self._next_timer
        timers = self._timers
        links = self._links
        soonest = self._next_timer
        rescan = False
        fresh: float | None = None  # the soonest of the links re-read here
        read = 0  # how many of them have a timer
        while stale:
            link = stale.pop()
            old = timers.get(link)
            at = link.timer() if link in links else None
            if at is None:
                timers.pop(link, None)
            else:
                timers[link] = at
                read += 1
                if fresh is None or at < fresh:
                    fresh = at
            if old is not None and old == soonest and (at is None or at > old):
                rescan = True
            elif at is not None and (soonest is None or at < soonest):
                soonest = at
        if rescan:
            # every link with a timer was just re-read (a pair's one link): no pass needed
            soonest = fresh if read == len(timers) else min(timers.values())
        self._next_timer = soonest
        return soonest

    def retime(self, link: Link) -> None:
        """``link``'s own deadline (keepalive) moved without a call on its connection: its
        timer is re-read."""
        self._timer_stale.add(link)

    def due(self, now: float) -> list[Link]:
        """The links whose timer (QUIC, dial deadline or keepalive) is due at ``now``: the
        only ones :meth:`mesh.core.MeshCore.handle_timer` has anything to do for."""
        soonest = self.next_timer()
        if soonest is None or soonest > now:
            return []
        return [link for link, t in self._timers.items() if t <= now]

    # internals ----------------------------------------------------------------------

    def _add(self, link: Link, quic: _quicshim.MeshQuicConnection) -> None:
        quic.watch(self.touched, link)
        quic.watch(self._timer_stale, link, timer=True)
        self._links.add(link)

    def _quic_config(self, *, is_client: bool) -> QuicConfiguration:
        config = self._ctx.config
        return QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[ALPN],
            verify_mode=ssl.CERT_NONE,
            idle_timeout=config.idle_timeout,
            max_datagram_frame_size=65536,
            connection_id_length=config.connection_id_length,
        )
