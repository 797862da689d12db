"""Handshake challenges: prove possession of an identity key, now, for this handshake.

Each side sends a fresh :func:`new_nonce`; the other signs it with
:func:`sign_challenge`. The signed message is::

    CHALLENGE_LABEL || len(nonce) || nonce || len(context) || context

The fixed label keeps these signatures apart from every other Ed25519 signature
the same key makes (tickets, sealed payloads). The nonce makes each answer
fresh; the ``context`` binds it to one handshake: pass
:func:`handshake_context` of both peer ids and the ticket digests, so an answer
captured in one handshake fails in any other.
"""

from __future__ import annotations

import hashlib
import secrets

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.crypto.keys import KEY_SIZE
from protocol.errors import ChallengeError

__all__ = [
    "CHALLENGE_LABEL",
    "CHALLENGE_SIGNATURE_SIZE",
    "MAX_CONTEXT_SIZE",
    "NONCE_SIZE",
    "handshake_context",
    "new_nonce",
    "sign_challenge",
    "verify_challenge",
]

NONCE_SIZE = 32
CHALLENGE_SIGNATURE_SIZE = 64
MAX_CONTEXT_SIZE = 1024
CHALLENGE_LABEL = b"shards-of-eternity/handshake-challenge/v1\x00"
_CONTEXT_LABEL = b"shards-of-eternity/handshake-context/v1\x00"


def new_nonce() -> bytes:
    """32 fresh random bytes from :mod:`secrets`."""
    return secrets.token_bytes(NONCE_SIZE)


def handshake_context(*parts: bytes | str) -> bytes:
    """A 32-byte context binding a challenge to one handshake.

    Order matters: pass the parts in an order both sides agree on, e.g.
    ``handshake_context(initiator_id, responder_id, initiator_ticket_digest,
    responder_ticket_digest)``. Parts are length-prefixed, so no two different
    lists of parts give the same context.
    """
    h = hashlib.sha256(_CONTEXT_LABEL)
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else bytes(part)
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.digest()


def sign_challenge(identity_key: Ed25519PrivateKey, nonce: bytes, *, context: bytes) -> bytes:
    """Sign the peer's ``nonce`` for this handshake's ``context`` (64 bytes)."""
    return identity_key.sign(_message(nonce, context, ValueError))


def verify_challenge(
    public_key_raw: bytes, nonce: bytes, signature: bytes, *, context: bytes
) -> None:
    """Check a challenge answer; raise :class:`ChallengeError` unless it is valid.

    ``nonce`` must be the one this side sent, ``context`` the one it computed itself.
    """
    message = _message(nonce, context, ChallengeError)
    if not isinstance(public_key_raw, bytes | bytearray) or len(public_key_raw) != KEY_SIZE:
        raise ChallengeError("peer public key must be 32 bytes")
    if not isinstance(signature, bytes | bytearray) or len(signature) != CHALLENGE_SIGNATURE_SIZE:
        raise ChallengeError("challenge signature must be 64 bytes")
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key_raw)).verify(bytes(signature), message)
    except (InvalidSignature, ValueError) as exc:
        raise ChallengeError("challenge signature does not verify") from exc


def _message(nonce: bytes, context: bytes, error: type[Exception]) -> bytes:
    if not isinstance(nonce, bytes | bytearray) or len(nonce) != NONCE_SIZE:
        raise error(f"challenge nonce must be {NONCE_SIZE} bytes")
    if not isinstance(context, bytes | bytearray) or len(context) > MAX_CONTEXT_SIZE:
        raise error(f"challenge context must be bytes, at most {MAX_CONTEXT_SIZE}")
    return b"".join(
        (
            CHALLENGE_LABEL,
            len(nonce).to_bytes(2, "big"),
            bytes(nonce),
            len(context).to_bytes(2, "big"),
            bytes(context),
        )
    )
