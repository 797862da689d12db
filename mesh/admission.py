"""Who is admitted to the node, and for how long (a mixin of :class:`mesh.core.MeshCore`).

Split from the core along the seam "connections" versus "peers": what happens
once a connection's handshake is done (the simultaneous-dial tie-break, the
``PeerConnected`` event), what the node knows of each peer's credential, and
how long a connection may outlive it. Sans-I/O: every entry takes ``now``.

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

import logging

from mesh import _quicshim
from mesh.auth import PeerIdentity
from mesh.config import MeshConfig
from mesh.events import PeerConnected
from mesh.handshake import CloseCode, HandshakeFailure
from mesh.link import Link
from mesh.reliable import ReliableMixin
from protocol.crypto import b64url_encode, new_nonce
from protocol.errors import (
    CryptoError,
    ProtocolError,
    TicketExpiredError,
    TicketNotYetValidError,
)
from protocol.messages.peer import PeerHelloMessage

__all__ = ["AdmissionMixin"]

logger = logging.getLogger("mesh.core")


class AdmissionMixin(ReliableMixin):
    """Authenticated peers, their credentials and expiry (see the module docstring)."""

    config: MeshConfig
    _by_character: dict[int, str]
    _presented: dict[Link, str]

    def _drop_active(
        self,
        link: Link,
        code: int,
        reason: str,
        now: float,
        *,
        redial: bool = False,
        left: tuple[int, int] | None = None,
    ) -> None:
        raise NotImplementedError

    def _enforce_capacity(self, now: float) -> None:
        raise NotImplementedError

    # credentials ------------------------------------------------------------------

    def _learn(self, identity: PeerIdentity) -> None:
        """Remember a verified credential; a later one of the same character extends
        the live connection."""
        self._known[identity.peer_id] = identity
        self._by_character[identity.character_id] = identity.peer_id
        link = self._active.get(identity.peer_id)
        current = link.identity if link is not None else None
        if (
            link is not None
            and current is not None
            and identity.character_id == current.character_id
            and identity.expires_at > current.expires_at
        ):
            link.identity = identity

    def _expiry_times(self) -> list[float]:
        """When live connections' peer credentials expire, in ``now`` time."""
        return [
            link.identity.expires_at - self.wall_offset
            for link in self._active.values()
            if link.identity is not None
        ]

    def _expire(self, now: float) -> None:
        """Close every connection whose peer's credential expired."""
        wall = now + self.wall_offset
        for link in list(self._active.values()):
            if link.identity is not None and wall >= link.identity.expires_at:
                logger.info(
                    "peer %s: credential expired, closing the connection",
                    link.identity.peer_id[:12],
                )
                self._drop_active(link, CloseCode.TICKET_EXPIRED, "ticket expired", now)

    def _present_renewal(self, link: Link, now: float) -> None:
        """Send our credential on ``link`` if it changed since we last presented one there."""
        try:
            self.auth.own_identity(now=now + self.wall_offset)  # a LAN ticket re-issues here
        except CryptoError:
            return  # ours lapsed: the peer closes the connection at its expiry
        credential = self.auth.credential()
        if self._presented.get(link) == credential:
            return
        self._presented[link] = credential
        link.send_control(
            PeerHelloMessage(
                node_id=self.identity.peer_id,
                challenge=b64url_encode(new_nonce()),
                ticket=credential,
            )
        )

    def _on_renewal(self, link: Link, hello: PeerHelloMessage, now: float) -> None:
        """A PEER_HELLO after the handshake: the peer's renewed credential."""
        current = link.identity
        if current is None:  # pragma: no cover - only called on authenticated links
            raise HandshakeFailure(CloseCode.PROTOCOL_VIOLATION, "renewal before the handshake")
        if hello.ticket is None:
            raise HandshakeFailure(CloseCode.TICKET_INVALID, "renewal without a credential")
        if hello.ticket == current.credential:
            return  # nothing new: no signature to check again
        try:
            renewed = self.auth.verify_credential(hello.ticket, now=now + self.wall_offset)
        except (TicketExpiredError, TicketNotYetValidError) as exc:
            raise HandshakeFailure(CloseCode.TICKET_EXPIRED, f"renewed: {exc}") from exc
        except CryptoError as exc:
            raise HandshakeFailure(CloseCode.TICKET_INVALID, f"renewed: {exc}") from exc
        if (renewed.peer_id, renewed.character_id) != (current.peer_id, current.character_id):
            raise HandshakeFailure(
                CloseCode.PEER_MISMATCH, "renewed credential names another peer or character"
            )
        self._learn(renewed)

    # authentication -----------------------------------------------------------------

    def _on_authenticated(self, link: Link, now: float) -> None:
        identity = link.handshake.peer
        if identity is None:  # pragma: no cover - the handshake sets it before done
            raise ProtocolError("handshake finished without a peer")
        link.identity = identity
        link.authenticated = True
        link.dial_deadline = None
        link.next_ping_at = now + self.config.keepalive_interval
        self._presented[link] = self.auth.credential()
        if self.config.ack_tuning:
            _quicshim.tune_ack_delay(link.quic, self.config.ack_delay)
        self._learn(identity)
        self._redial_at.pop(identity.peer_id, None)
        self._was_connected.add(identity.peer_id)
        # one socket per node: even an inbound connection comes from the peer's endpoint
        self._endpoints.setdefault(identity.peer_id, link.addr)
        pid = identity.peer_id
        existing = self._active.get(pid)
        if existing is not None and existing is not link:
            stale = now - existing.last_rx > 2 * self.config.keepalive_interval
            we_are_lower = self.identity.peer_id < pid
            keep_new = stale or link.is_client == we_are_lower
            logger.debug(
                "duplicate connection with %s, keeping the %s one",
                pid[:12],
                "new" if keep_new else "existing",
            )
            survivor = link if keep_new else existing
            if link.dial_id is not None:
                self._events.append(
                    PeerConnected(identity, survivor.addr, survivor.is_client, link.dial_id)
                )
                link.dial_id = None
            if not keep_new:
                link.close(CloseCode.DUPLICATE, "duplicate connection")
                return
            existing.active = False
            existing.close(CloseCode.DUPLICATE, "duplicate connection")
            self._active[pid] = link
            link.active = True
            self._resend_direct(pid, link, now)
            return
        self._active[pid] = link
        link.active = True
        logger.info(
            "peer %s (%s) connected %s",
            pid[:12],
            identity.character_name,
            "outbound" if link.is_client else "inbound",
        )
        self._events.append(PeerConnected(identity, link.addr, link.is_client, link.dial_id))
        link.dial_id = None
        self._resend_direct(pid, link, now)
        self._enforce_capacity(now)
