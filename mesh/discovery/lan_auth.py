"""LAN group authentication: a shared passphrase instead of a lobby.

:class:`LanGroupAuth` is the :class:`~mesh.auth.Authenticator` of LAN mode.
The passphrase is stretched once (PBKDF2-SHA256, 100,000 iterations:
:func:`protocol.crypto.derive_group_key`) into the group key, kept only in
memory. In the handshake:

* the credential is a ticket the node signs for itself with its identity key
  (:func:`protocol.crypto.issue_self_ticket`), naming the group tag; a peer's
  ticket must verify, be current and name our group tag;
* each side adds a group proof (an HMAC with the group key over the *other*
  side's fresh nonce and its own identity key) which the other checks: only a
  holder of the passphrase can make it, it cannot be replayed under another
  nonce or lent to another identity.

Identities are the nodes' own keys: the peer id is the fingerprint of the key
that signed the ticket and answered the challenge. The character id, which the
movement codec needs as a u32, is derived from the peer id
(:func:`lan_character_id`).
"""

from __future__ import annotations

from collections.abc import Sequence

from mesh.auth import Authenticator, PeerIdentity
from protocol.crypto import (
    DEFAULT_TICKET_TTL,
    Identity,
    derive_group_key,
    group_proof,
    group_tag,
    issue_self_ticket,
    verify_group_proof,
    verify_self_ticket,
)
from protocol.errors import ChallengeError

__all__ = ["LanGroupAuth", "lan_character_id"]


def lan_character_id(peer_id: str) -> int:
    """The character id of a LAN node: the first 31 bits of its peer id."""
    return int(peer_id[:8], 16) & 0x7FFFFFFF


class LanGroupAuth(Authenticator):
    """Admit exactly the peers that know the group passphrase.

    Give ``passphrase`` (stretched here, ~0.1 s: construct it off the hot path)
    or an already derived ``group_key``. ``now`` issues the first ticket;
    :meth:`own_identity` re-issues it when less than half its ``ttl`` is left.
    """

    def __init__(
        self,
        identity: Identity,
        *,
        character_name: str,
        now: float,
        passphrase: str | None = None,
        group_key: bytes | None = None,
        faction: str | None = None,
        endpoints: Sequence[str] = (),
        ttl: float = DEFAULT_TICKET_TTL,
    ) -> None:
        if (passphrase is None) == (group_key is None):
            raise ValueError("give exactly one of passphrase and group_key")
        key = derive_group_key(passphrase) if passphrase is not None else bytes(group_key or b"")
        self._key = key
        self.group_tag = group_tag(key)
        self.identity = identity
        self.character_name = character_name
        self.character_id = lan_character_id(identity.peer_id)
        self.faction = faction
        self.ttl = ttl
        self._endpoints = tuple(endpoints)
        self._ticket = ""
        self._expires_at = 0.0
        self._issue(now)

    def __repr__(self) -> str:
        return f"LanGroupAuth(peer_id={self.identity.peer_id!r}, group_tag={self.group_tag!r})"

    @property
    def peer_id(self) -> str:
        """This node's peer id."""
        return self.identity.peer_id

    def set_endpoints(self, endpoints: Sequence[str], *, now: float) -> None:
        """Name these ``host:port`` endpoints in our ticket from now on."""
        self._endpoints = tuple(endpoints)
        self._issue(now)

    # -- Authenticator --------------------------------------------------------

    def credential(self) -> str:
        return self._ticket

    def own_identity(self, *, now: float) -> PeerIdentity:
        if self._expires_at - now < self.ttl / 2:
            self._issue(now)
        return super().own_identity(now=now)

    def verify_credential(self, credential: str, *, now: float) -> PeerIdentity:
        ticket = verify_self_ticket(credential, now=now)
        if ticket.group != self.group_tag:
            raise ChallengeError(
                "peer belongs to another LAN group",
                details={"peer_group": ticket.group},
            )
        return PeerIdentity.from_ticket(ticket, credential)

    def membership_proof(self, peer_nonce: bytes, own_public_key: bytes) -> bytes | None:
        return group_proof(self._key, peer_nonce, own_public_key)

    def verify_membership(self, peer: PeerIdentity, own_nonce: bytes, proof: bytes | None) -> None:
        if proof is None:
            raise ChallengeError("peer sent no group proof")
        verify_group_proof(self._key, own_nonce, peer.public_key, proof)

    # -- internals ------------------------------------------------------------

    def _issue(self, now: float) -> None:
        self._ticket = issue_self_ticket(
            self.identity.signing_key,
            character_id=self.character_id,
            character_name=self.character_name,
            faction=self.faction,
            box_key=self.identity.box_public_key,
            endpoints=list(self._endpoints),
            now=now,
            ttl=self.ttl,
            group=self.group_tag,
        )
        self._expires_at = now + self.ttl
