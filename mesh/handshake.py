"""The peer handshake on the control stream, after TLS (sans-I/O, one per connection).

Messages (protocol JSON in CONTROL frames, see :mod:`mesh.streams`)::

    client -> server   PEER_HELLO   node_id, ticket (credential), challenge = nonce_c
    server -> client   PEER_HELLO   node_id, ticket, challenge = nonce_s
                       PEER_PROOF   signature over nonce_c (context "server")
    client -> server   PEER_PROOF   signature over nonce_s (context "client")
    server -> client   PEER_WELCOME accepted

Each signature is :func:`protocol.crypto.sign_challenge` with a context of
:func:`protocol.crypto.handshake_context` over the role, both peer ids and
both credential digests: an answer captured in one handshake is useless in
any other, and neither side can reflect the other's signature. A LAN
authenticator adds a membership proof (``group_proof``) to PEER_PROOF.

The dialler also checks that the server's TLS certificate key is the identity
key of the server's ticket (:mod:`mesh.certs`): the TLS session itself ends at
the ticket holder, so nobody can sit in the middle relaying the challenges.

Any failure raises :class:`HandshakeFailure` carrying the :class:`CloseCode`
the connection is closed with. Nothing but these messages is accepted before
the handshake is complete.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Callable

from mesh.auth import Authenticator, PeerIdentity
from protocol.crypto import (
    Identity,
    handshake_context,
    new_nonce,
    sign_challenge,
    verify_challenge,
)
from protocol.errors import ChallengeError, CryptoError, TicketExpiredError, TicketNotYetValidError
from protocol.messages.base import BaseMessage
from protocol.messages.peer import PeerHelloMessage, PeerProofMessage, PeerWelcomeMessage

__all__ = ["CloseCode", "Handshake", "HandshakeFailure"]


class CloseCode(enum.IntEnum):
    """QUIC application error codes the mesh closes connections with (documented, stable)."""

    NORMAL = 0x0
    """The node is closing or the peer was disconnected on purpose (it left)."""
    HANDSHAKE_FAILED = 0x101
    """Generic handshake failure."""
    TICKET_INVALID = 0x102
    """The credential is malformed, tampered, forged or from another issuer."""
    TICKET_EXPIRED = 0x103
    """The credential is expired or not yet valid."""
    CHALLENGE_FAILED = 0x104
    """The challenge signature (or group proof) does not verify: stolen ticket, replay."""
    PEER_MISMATCH = 0x105
    """Not the peer that was dialled, or its TLS key is not its ticket key."""
    PROTOCOL_VIOLATION = 0x106
    """A bad frame or an unexpected message on the control stream."""
    HANDSHAKE_TIMEOUT = 0x107
    """The handshake did not complete within the dial timeout."""
    DUPLICATE = 0x108
    """Simultaneous dial: the other connection between the same two nodes won."""
    EVICTED = 0x109
    """Over ``max_connections``: a peer outside the area of interest was dropped."""
    SELF_CONNECTION = 0x10A
    """The node connected to itself."""


class HandshakeFailure(Exception):
    """A handshake step failed; the connection must be closed with ``code``."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _State(enum.Enum):
    WAIT_HELLO = "wait_hello"
    WAIT_PROOF = "wait_proof"
    WAIT_WELCOME = "wait_welcome"
    DONE = "done"


def _b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64d(text: str | None, what: str) -> bytes:
    if text is None:
        raise HandshakeFailure(CloseCode.PROTOCOL_VIOLATION, f"{what} missing")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HandshakeFailure(CloseCode.PROTOCOL_VIOLATION, f"{what} is not base64") from exc


class Handshake:
    """One side of the handshake of one connection.

    ``server_key`` (client side only) returns the raw Ed25519 key of the server's
    TLS certificate. ``expected_peer_id`` (client side) is the peer that was dialled.
    """

    def __init__(
        self,
        *,
        is_client: bool,
        identity: Identity,
        auth: Authenticator,
        expected_peer_id: str | None = None,
        server_key: Callable[[], bytes | None] | None = None,
    ) -> None:
        self.is_client = is_client
        self._identity = identity
        self._auth = auth
        self._expected = expected_peer_id
        self._server_key = server_key
        self._nonce = new_nonce()
        self._state = _State.WAIT_HELLO
        self._own_digest: bytes | None = None
        self.peer: PeerIdentity | None = None

    @property
    def done(self) -> bool:
        """True once the peer is authenticated (and, on the client, welcomed)."""
        return self._state is _State.DONE

    def start(self, now: float) -> list[BaseMessage]:
        """The client's opening PEER_HELLO (a server sends nothing first)."""
        return [self._hello(now)] if self.is_client else []

    def receive(self, message: BaseMessage, now: float) -> list[BaseMessage]:
        """Process one control message; return the replies. Raises :class:`HandshakeFailure`."""
        if isinstance(message, PeerHelloMessage) and self._state is _State.WAIT_HELLO:
            return self._on_hello(message, now)
        if isinstance(message, PeerProofMessage) and self._state is _State.WAIT_PROOF:
            return self._on_proof(message)
        if isinstance(message, PeerWelcomeMessage) and self._state is _State.WAIT_WELCOME:
            if not message.accepted:
                raise HandshakeFailure(
                    CloseCode.HANDSHAKE_FAILED, f"refused by the peer: {message.reason}"
                )
            self._state = _State.DONE
            return []
        raise HandshakeFailure(
            CloseCode.PROTOCOL_VIOLATION,
            f"unexpected {message.type} in handshake state {self._state.value}",
        )

    # steps -----------------------------------------------------------------

    def _hello(self, now: float) -> PeerHelloMessage:
        own = self._auth.own_identity(now=now)
        self._own_digest = own.digest
        return PeerHelloMessage(
            node_id=self._identity.peer_id,
            challenge=_b64e(self._nonce),
            ticket=self._auth.credential(),
            public_key=_b64e(self._identity.public_key),
            character_id=own.character_id,
        )

    def _on_hello(self, hello: PeerHelloMessage, now: float) -> list[BaseMessage]:
        if hello.ticket is None:
            raise HandshakeFailure(CloseCode.TICKET_INVALID, "PEER_HELLO without a credential")
        try:
            peer = self._auth.verify_credential(hello.ticket, now=now)
        except (TicketExpiredError, TicketNotYetValidError) as exc:
            raise HandshakeFailure(CloseCode.TICKET_EXPIRED, str(exc)) from exc
        except CryptoError as exc:
            raise HandshakeFailure(CloseCode.TICKET_INVALID, str(exc)) from exc
        if hello.node_id != peer.peer_id:
            raise HandshakeFailure(CloseCode.PEER_MISMATCH, "node_id is not the ticket's key")
        if peer.peer_id == self._identity.peer_id:
            raise HandshakeFailure(CloseCode.SELF_CONNECTION, "connected to itself")
        peer_nonce = _b64d(hello.challenge, "challenge")
        if len(peer_nonce) != len(self._nonce):
            raise HandshakeFailure(CloseCode.PROTOCOL_VIOLATION, "challenge of the wrong size")
        self.peer = peer
        self._peer_nonce = peer_nonce
        if self.is_client:
            if self._expected is not None and peer.peer_id != self._expected:
                raise HandshakeFailure(CloseCode.PEER_MISMATCH, "not the peer that was dialled")
            tls_key = self._server_key() if self._server_key is not None else None
            if tls_key != peer.public_key:
                raise HandshakeFailure(
                    CloseCode.PEER_MISMATCH, "TLS certificate key is not the ticket key"
                )
            self._state = _State.WAIT_PROOF
            return []
        replies: list[BaseMessage] = [self._hello(now), self._proof()]
        self._state = _State.WAIT_PROOF
        return replies

    def _proof(self) -> PeerProofMessage:
        signature = sign_challenge(
            self._identity.signing_key,
            self._peer_nonce,
            context=self._context("client" if self.is_client else "server"),
        )
        extra = self._auth.membership_proof(self._peer_nonce, self._identity.public_key)
        return PeerProofMessage(
            signature=_b64e(signature),
            group_proof=_b64e(extra) if extra is not None else None,
        )

    def _on_proof(self, proof: PeerProofMessage) -> list[BaseMessage]:
        if self.peer is None:  # pragma: no cover - WAIT_PROOF implies a verified hello
            raise HandshakeFailure(CloseCode.PROTOCOL_VIOLATION, "proof before hello")
        signature = _b64d(proof.signature, "signature")
        extra = _b64d(proof.group_proof, "group_proof") if proof.group_proof else None
        try:
            verify_challenge(
                self.peer.public_key,
                self._nonce,
                signature,
                context=self._context("server" if self.is_client else "client"),
            )
            self._auth.verify_membership(self.peer, self._nonce, extra)
        except ChallengeError as exc:
            raise HandshakeFailure(CloseCode.CHALLENGE_FAILED, str(exc)) from exc
        if self.is_client:
            self._state = _State.WAIT_WELCOME
            return [self._proof()]
        self._state = _State.DONE
        return [
            PeerWelcomeMessage(
                node_id=self._identity.peer_id,
            )
        ]

    def _context(self, signer_role: str) -> bytes:
        if self.peer is None or self._own_digest is None:  # pragma: no cover
            raise HandshakeFailure(CloseCode.PROTOCOL_VIOLATION, "handshake out of order")
        own_id, peer_id = self._identity.peer_id, self.peer.peer_id
        if self.is_client:
            client_id, server_id = own_id, peer_id
            client_digest, server_digest = self._own_digest, self.peer.digest
        else:
            client_id, server_id = peer_id, own_id
            client_digest, server_digest = self.peer.digest, self._own_digest
        return handshake_context(
            "shards/1", signer_role, client_id, server_id, client_digest, server_digest
        )
