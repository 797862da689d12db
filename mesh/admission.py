"""Who is admitted to the node, and for how long (sans-I/O).

Two parts of :class:`mesh.core.MeshCore`:

* :class:`PeerDirectory`: what the node knows of each peer, connected or not:
  its newest verified credential, where to dial it, its location, when it may
  be redialled and whether it was ever connected.
* :class:`Admission`: what happens once a link's peer handshake is done (the
  simultaneous-dial tie-break, the ``PeerConnected`` event), and how long a
  connection may outlive its peer's credential. It decides; the core acts on
  the :class:`Admitted` outcome and on the links :meth:`Admission.expired`
  returns.

Simultaneous dial: when a peer already has a link on the same path kind (direct
or TURN, :attr:`mesh.link.Link.path`), the new one wins if the old one has been
silent for two keepalive intervals, or else if its client is the side with the
lower peer id (both ends reach the same verdict); the loser is closed with
:attr:`CloseCode.DUPLICATE`. A link on the other path kind is kept beside the
one there (:attr:`Admitted.ADDED`): the core decides which of the two carries
the peer.

Credential lifetime (every credential expires: lobby tickets, LAN self-issued
tickets):

* A connection lasts while its peer's credential is valid. At its
  ``expires_at`` the node closes it with :attr:`CloseCode.TICKET_EXPIRED`
  (``PeerDisconnected`` with that code), driven by :meth:`MeshCore.get_timer`.
* Unless the peer presented a renewed credential first. A node whose own
  credential changed (``NetworkClient`` re-selects at 80 % of the ticket's
  lifetime and calls ``LobbyTicketAuth.update_ticket``; ``LanGroupAuth``
  re-issues at half of it) sends it on each live connection at the next
  keepalive, as a ``PEER_HELLO`` on the control stream after the handshake
  (its ``challenge`` is a fresh nonce nobody answers). The receiver verifies
  it like a handshake credential, at ``now``, and requires the same peer id
  (the key the connection authenticated) and character id; a bad one closes
  the connection (``TICKET_EXPIRED``, ``TICKET_INVALID`` or ``PEER_MISMATCH``).
* A renewed credential learnt another way (the lobby's ``PEER_INFO`` through
  :meth:`MeshCore.add_peer`, a relay envelope) extends a live connection the
  same way. A credential for another character never does: that peer redials
  with it when the old one expires.
"""

from __future__ import annotations

import enum
import logging

from mesh import _quicshim
from mesh.auth import PeerIdentity
from mesh.context import CoreContext
from mesh.events import PeerConnected
from mesh.handshake import CloseCode, HandshakeFailure
from mesh.link import Link
from mesh.paths import Route
from mesh.router import LinkTable
from protocol.crypto import b64url_encode, new_nonce
from protocol.errors import CryptoError, ProtocolError, TicketExpiredError, TicketNotYetValidError
from protocol.messages.peer import PeerHelloMessage

__all__ = ["Admission", "Admitted", "PeerDirectory"]

logger = logging.getLogger("mesh.core")


class PeerDirectory:
    """What the node knows of each peer, by peer id (see the module docstring)."""

    def __init__(self) -> None:
        self.known: dict[str, PeerIdentity] = {}
        """The newest verified credential of each peer."""
        self.by_character: dict[int, str] = {}
        """Character id -> peer id (the newest credential naming it)."""
        self.endpoints: dict[str, Route] = {}
        """Where to dial each peer."""
        self.locations: dict[str, int] = {}
        """Each peer's location, from the lobby or its movement."""
        self.redial_at: dict[str, float] = {}
        """After a failed dial: not before this ``now``."""
        self.was_connected: set[str] = set()
        """Peers that were authenticated once (a broken path is retried sooner)."""

    def lookup(self, target: str | int) -> PeerIdentity | None:
        """A peer's credential by peer id or character id."""
        pid = self.by_character.get(target) if isinstance(target, int) else target
        return self.known.get(pid) if pid is not None else None


class Admitted(enum.Enum):
    """What :meth:`Admission.admit` made of a link whose peer handshake finished."""

    CONNECTED = "connected"
    """The peer had no direct link: this one is it (``PeerConnected`` reported)."""
    REPLACED = "replaced"
    """The peer had one; this one won the tie-break and replaced it."""
    DUPLICATE = "duplicate"
    """The peer had one and kept it; this link is closing."""
    ADDED = "added"
    """The peer had a link on the other path kind: this one is kept beside it, as its
    spare (the core may make it the one in use)."""


class Admission:
    """Authenticated peers, their credentials and expiry (see the module docstring)."""

    def __init__(self, ctx: CoreContext, table: LinkTable, directory: PeerDirectory) -> None:
        self._ctx = ctx
        self._table = table
        self.directory = directory
        """What the node knows of each peer (this part writes it; others read it)."""
        self._presented: dict[Link, str] = {}
        # the soonest expiry of the direct links' credentials (Unix time), read on every
        # get_timer: recomputed only when the direct links or a credential changed
        self._expiry: float | None = None
        self._expiry_key: tuple[int, int] | None = None
        self._learnt = 0

    # credentials ------------------------------------------------------------------

    def verify(self, credential: str, now: float) -> PeerIdentity:
        """Verify a peer's credential at ``now`` and remember it (raises a ``CryptoError``)."""
        identity = self._ctx.auth.verify_credential(credential, now=self._ctx.wall(now))
        self.learn(identity)
        return identity

    def learn(self, identity: PeerIdentity) -> None:
        """Remember a verified credential; a later one of the same character extends
        the live connection."""
        directory = self.directory
        directory.known[identity.peer_id] = identity
        directory.by_character[identity.character_id] = identity.peer_id
        pid = identity.peer_id
        for link in (self._table.direct(pid), self._table.spares.get(pid)):
            current = link.identity if link is not None else None
            if (
                link is not None
                and current is not None
                and identity.character_id == current.character_id
                and identity.expires_at > current.expires_at
            ):
                link.identity = identity
                self._learnt += 1

    def next_expiry(self) -> float | None:
        """When the first live connection's peer credential expires, in ``now`` time
        (None: no direct link).

        Cached: a crowded node reads it after every datagram, and it only changes when
        the table's direct links (:attr:`LinkTable.directs_changes`) or a credential
        (:meth:`learn`) do.
        """
        key = (self._table.directs_changes, self._learnt)
        if key != self._expiry_key:
            self._expiry_key = key
            self._expiry = min(
                [
                    link.identity.expires_at
                    for link in self._table.directs.values()
                    if link.identity is not None
                ],
                default=None,
            )
        expiry = self._expiry
        return None if expiry is None else expiry - self._ctx.wall_offset

    def expired(self, now: float) -> list[Link]:
        """Direct links whose peer's credential expired at ``now`` (the core closes them)."""
        expiry = self.next_expiry()
        if expiry is None or now < expiry - 1.0:  # surely none yet (the scan decides)
            return []
        wall = self._ctx.wall(now)
        return [
            link
            for link in self._table.directs.values()
            if link.identity is not None and wall >= link.identity.expires_at
        ]  # a spare goes with the link in use (same peer, same credential)

    def present_renewal(self, link: Link, now: float) -> None:
        """Send our credential on ``link`` if it changed since we last presented one there."""
        ctx = self._ctx
        try:
            ctx.auth.own_identity(now=ctx.wall(now))  # a LAN ticket re-issues here
        except CryptoError:
            return  # ours lapsed: the peer closes the connection at its expiry
        credential = ctx.auth.credential()
        if self._presented.get(link) == credential:
            return
        self._presented[link] = credential
        link.send_control(
            PeerHelloMessage(
                node_id=ctx.identity.peer_id,
                challenge=b64url_encode(new_nonce()),
                ticket=credential,
            )
        )

    def on_renewal(self, link: Link, hello: PeerHelloMessage, now: float) -> None:
        """A PEER_HELLO after the handshake: the peer's renewed credential.

        Raises :class:`HandshakeFailure` (the core closes the link with its code)
        when it is missing, invalid, expired or names another peer or character.
        """
        current = link.identity
        if current is None:  # pragma: no cover - only called on authenticated links
            raise HandshakeFailure(CloseCode.PROTOCOL_VIOLATION, "renewal before the handshake")
        if hello.ticket is None:
            raise HandshakeFailure(CloseCode.TICKET_INVALID, "renewal without a credential")
        if hello.ticket == current.credential:
            return  # nothing new: no signature to check again
        try:
            renewed = self._ctx.auth.verify_credential(hello.ticket, now=self._ctx.wall(now))
        except (TicketExpiredError, TicketNotYetValidError) as exc:
            raise HandshakeFailure(CloseCode.TICKET_EXPIRED, f"renewed: {exc}") from exc
        except CryptoError as exc:
            raise HandshakeFailure(CloseCode.TICKET_INVALID, f"renewed: {exc}") from exc
        if (renewed.peer_id, renewed.character_id) != (current.peer_id, current.character_id):
            raise HandshakeFailure(
                CloseCode.PEER_MISMATCH, "renewed credential names another peer or character"
            )
        self.learn(renewed)

    def forget(self, link: Link) -> None:
        """``link`` terminated."""
        self._presented.pop(link, None)

    # authentication -----------------------------------------------------------------

    def admit(self, link: Link, now: float) -> Admitted:
        """The peer handshake on ``link`` finished: make it the peer's direct link or not."""
        ctx, directory = self._ctx, self.directory
        config = ctx.config
        identity = link.handshake.peer
        if identity is None:  # pragma: no cover - the handshake sets it before done
            raise ProtocolError("handshake finished without a peer")
        link.authenticate(identity, now, config.keepalive_interval, config.path_probe_interval)
        self._presented[link] = ctx.auth.credential()
        if config.ack_tuning:
            _quicshim.tune_ack_delay(link.quic, config.ack_delay)
        self.learn(identity)
        pid = identity.peer_id
        directory.redial_at.pop(pid, None)
        directory.was_connected.add(pid)
        # one socket per node: even an inbound connection comes from the peer's endpoint;
        # an address we dialled and that answered is the one to redial (a hole punch
        # dials several candidates: the one that connected wins). A TURN path is not
        # an endpoint: it is reopened through TURN, not by a redial.
        if link.path == "direct":
            if link.is_client:
                directory.endpoints[pid] = link.addr
            else:
                directory.endpoints.setdefault(pid, link.addr)
        table = self._table
        existing = table.active(pid, link.path)
        if existing is not None and existing is not link:
            stale = now - existing.last_rx > 2 * config.keepalive_interval
            we_are_lower = ctx.identity.peer_id < pid
            keep_new = stale or link.is_client == we_are_lower
            logger.debug(
                "duplicate %s connection with %s, keeping the %s one",
                link.path,
                pid[:12],
                "new" if keep_new else "existing",
            )
            survivor = link if keep_new else existing
            if link.dial_id is not None:
                ctx.events.append(
                    PeerConnected(identity, survivor.addr, survivor.is_client, link.dial_id)
                )
                link.dial_id = None
            if not keep_new:
                link.close(CloseCode.DUPLICATE, "duplicate connection")
                return Admitted.DUPLICATE
            in_use = table.direct(pid) is existing
            table.unset_direct(existing)  # the spare (if any) carries the peer meanwhile
            existing.close(CloseCode.DUPLICATE, "duplicate connection")
            if in_use and table.direct(pid) is not None:
                table.set_spare(link)
                table.swap(pid)
            elif table.direct(pid) is not None:
                table.set_spare(link)
            else:
                table.set_direct(link)
            return Admitted.REPLACED
        if table.direct(pid) is not None:
            logger.info("peer %s: a %s path too", pid[:12], link.path)
            if link.dial_id is not None:
                ctx.events.append(PeerConnected(identity, link.addr, link.is_client, link.dial_id))
                link.dial_id = None
            table.set_spare(link)
            return Admitted.ADDED
        self._table.set_direct(link)
        logger.info(
            "peer %s (%s) connected %s",
            pid[:12],
            identity.character_name,
            "outbound" if link.is_client else "inbound",
        )
        ctx.events.append(PeerConnected(identity, link.addr, link.is_client, link.dial_id))
        link.dial_id = None
        return Admitted.CONNECTED
