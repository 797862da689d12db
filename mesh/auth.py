"""Who may join the mesh: the :class:`Authenticator` interface and the lobby-ticket one.

A handshake (:mod:`mesh.handshake`) is the same for every authenticator: each
side sends a *credential* and a fresh nonce, then signs the other's nonce with
its identity key, bound to both peer ids and both credential digests. What
differs is how a credential is checked and whether a further proof is needed:

* :class:`LobbyTicketAuth` (online): the credential is our lobby-signed peer
  ticket, checked against the trusted lobby public key with ``now``.
* LAN group auth (later, another module): the credential is a self-issued
  ticket, and :meth:`Authenticator.membership_proof` /
  :meth:`Authenticator.verify_membership` add a group proof over the
  verifier's nonce. Subclass :class:`Authenticator` and override those four
  methods; nothing else in the node changes.

Errors: :meth:`Authenticator.verify_credential` raises a
:class:`~protocol.errors.CryptoError` subclass (``TicketExpiredError`` etc.);
:meth:`Authenticator.verify_membership` raises ``ChallengeError``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.crypto import PeerTicket, ticket_digest, verify_ticket

__all__ = ["Authenticator", "LobbyTicketAuth", "PeerIdentity"]


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """An authenticated peer, as its verified credential describes it.

    ``peer_id`` (hex fingerprint of ``public_key``) is the node id used for
    routing and the simultaneous-dial tie-break. ``credential`` is the token
    the peer presented (forwarded in relay envelopes so a recipient can check
    the sender); ``digest`` is what handshake contexts bind to.
    """

    peer_id: str
    public_key: bytes
    box_key: bytes
    character_id: int
    character_name: str
    faction: str | None
    endpoints: tuple[str, ...]
    expires_at: float
    credential: str
    digest: bytes

    @classmethod
    def from_ticket(cls, ticket: PeerTicket, credential: str) -> PeerIdentity:
        """The identity a verified ticket describes."""
        return cls(
            peer_id=ticket.peer_id,
            public_key=ticket.public_key_bytes,
            box_key=ticket.box_key_bytes,
            character_id=ticket.character_id,
            character_name=ticket.character_name,
            faction=ticket.faction,
            endpoints=tuple(ticket.endpoints),
            expires_at=ticket.expires_at,
            credential=credential,
            digest=ticket_digest(ticket),
        )


class Authenticator(abc.ABC):
    """How a node proves itself and checks others (see the module docstring)."""

    @abc.abstractmethod
    def credential(self) -> str:
        """The credential token this node presents in its PEER_HELLO."""

    @abc.abstractmethod
    def verify_credential(self, credential: str, *, now: float) -> PeerIdentity:
        """Check a peer's credential; raise a ``CryptoError`` subclass if it is not valid."""

    def own_identity(self, *, now: float) -> PeerIdentity:
        """Our own identity as peers will see it (our credential, verified).

        The signature check runs once per credential: the result is reused while
        the credential is unchanged and ``now`` lies between the time it was
        verified and its expiry (a movement update asks for it every frame).
        """
        credential = self.credential()
        cached: tuple[str, float, PeerIdentity] | None = getattr(self, "_own_cache", None)
        if cached is not None:
            cached_credential, verified_at, identity = cached
            if cached_credential == credential and verified_at <= now <= identity.expires_at:
                return identity
        identity = self.verify_credential(credential, now=now)
        self._own_cache = (credential, now, identity)
        return identity

    def membership_proof(self, peer_nonce: bytes, own_public_key: bytes) -> bytes | None:
        """An extra proof over the peer's nonce (LAN group proof); None when not needed."""
        del peer_nonce, own_public_key
        return None

    def verify_membership(self, peer: PeerIdentity, own_nonce: bytes, proof: bytes | None) -> None:
        """Check the peer's extra proof over our nonce; raise ``ChallengeError`` if it fails."""
        del peer, own_nonce, proof


class LobbyTicketAuth(Authenticator):
    """Admit peers holding a ticket signed by the trusted lobby key.

    ``lobby_public_key``: the raw 32-byte Ed25519 key of the lobby;
    ``ticket``: this node's own ticket token. Use :meth:`update_ticket` when the
    lobby issues a fresh one (re-selection, renewal before expiry).
    ``accepted_keys``: other lobby keys whose tickets are admitted too (the lobby
    publishes them while it rotates its key); :meth:`trust` replaces them.
    """

    def __init__(
        self, lobby_public_key: bytes, ticket: str, *, accepted_keys: Iterable[bytes] = ()
    ) -> None:
        if len(lobby_public_key) != 32:
            raise ValueError("lobby_public_key must be the raw 32-byte Ed25519 key")
        self._lobby_key = bytes(lobby_public_key)
        self._ticket = ticket
        self._trusted: tuple[bytes, ...] = ()
        self.trust(accepted_keys)

    def trust(self, accepted_keys: Iterable[bytes]) -> None:
        """Admit tickets of ``accepted_keys`` besides the lobby key (replaces the previous)."""
        extra = tuple(bytes(k) for k in accepted_keys if bytes(k) != self._lobby_key)
        if any(len(k) != 32 for k in extra):
            raise ValueError("accepted keys must be raw 32-byte Ed25519 keys")
        self._trusted = (self._lobby_key, *extra)

    @property
    def trusted_keys(self) -> tuple[bytes, ...]:
        """The lobby key and the accepted ones."""
        return self._trusted

    @property
    def lobby_public_key(self) -> bytes:
        """The trusted lobby key (raw)."""
        return self._lobby_key

    def update_ticket(self, ticket: str) -> None:
        """Present ``ticket`` in handshakes from now on."""
        self._ticket = ticket

    def credential(self) -> str:
        return self._ticket

    def verify_credential(self, credential: str, *, now: float) -> PeerIdentity:
        ticket = verify_ticket(credential, self._trusted, now=now)
        return PeerIdentity.from_ticket(ticket, credential)
