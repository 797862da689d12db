"""LAN groups: a shared passphrase admits peers when there is no lobby.

The passphrase is stretched with PBKDF2-HMAC-SHA256, 100,000 iterations (the
seed's parameters), over the fixed application salt :data:`GROUP_SALT`, into a
32-byte group key. Every node that knows the passphrase derives the same key.

* :func:`group_tag` is safe to advertise (mDNS TXT): an HMAC of a fixed label,
  so it reveals nothing about the key beyond letting holders of a guess check it
  (each guess costs the full PBKDF2 work, hence the iteration count).
* :func:`group_proof` is an HMAC over the verifier's fresh nonce and the
  prover's identity key: it proves knowledge of the group key now, for this
  identity; it cannot be replayed under another nonce nor lent to another key.

PBKDF2 takes ~0.1 s: derive once at start-up and keep the key in the node that
uses it; this module caches nothing.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from protocol.crypto.keys import KEY_SIZE
from protocol.errors import ChallengeError

__all__ = [
    "GROUP_KEY_SIZE",
    "GROUP_PROOF_SIZE",
    "GROUP_SALT",
    "GROUP_TAG_LENGTH",
    "PBKDF2_ITERATIONS",
    "derive_group_key",
    "group_proof",
    "group_tag",
    "verify_group_proof",
]

PBKDF2_ITERATIONS = 100_000
"""The seed's PBKDF2-SHA256 iteration count (group keys and Fernet keys)."""
GROUP_SALT = b"shards-of-eternity/lan-group/v1"
"""Fixed, public application salt for group keys (a per-app salt: no per-user state)."""
GROUP_KEY_SIZE = 32
GROUP_PROOF_SIZE = 32
GROUP_TAG_LENGTH = 16
"""Hex characters of :func:`group_tag` (64 bits)."""
_TAG_LABEL = b"shards-of-eternity/group-tag/v1"
_PROOF_LABEL = b"shards-of-eternity/group-proof/v1\x00"


def derive_group_key(passphrase: str, *, salt: bytes = GROUP_SALT) -> bytes:
    """32-byte group key: PBKDF2-HMAC-SHA256(passphrase, salt, 100,000 iterations)."""
    if not isinstance(passphrase, str) or not passphrase:
        raise ValueError("the group passphrase must be a non-empty str")
    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA256(),
        length=GROUP_KEY_SIZE,
        salt=salt,
        iterations=PBKDF2_ITERATIONS,
    )
    return kdf.derive(passphrase.encode("utf-8"))


def group_tag(group_key: bytes) -> str:
    """Short public name of a group (16 hex chars), safe to put in mDNS TXT records."""
    _check_key(group_key)
    return hmac.new(group_key, _TAG_LABEL, hashlib.sha256).hexdigest()[:GROUP_TAG_LENGTH]


def group_proof(group_key: bytes, nonce: bytes, public_key_raw: bytes) -> bytes:
    """Prove knowledge of ``group_key`` for the verifier's ``nonce`` and this identity key."""
    _check_key(group_key)
    return _proof(group_key, nonce, public_key_raw, ValueError)


def verify_group_proof(group_key: bytes, nonce: bytes, public_key_raw: bytes, proof: bytes) -> None:
    """Check a group proof in constant time; raise :class:`ChallengeError` if it fails."""
    _check_key(group_key)
    expected = _proof(group_key, nonce, public_key_raw, ChallengeError)
    if not isinstance(proof, bytes | bytearray) or not hmac.compare_digest(expected, bytes(proof)):
        raise ChallengeError("group proof does not verify (wrong passphrase?)")


def _proof(group_key: bytes, nonce: bytes, public_key_raw: bytes, error: type[Exception]) -> bytes:
    if not isinstance(nonce, bytes | bytearray) or not 16 <= len(nonce) <= 64:
        raise error("group proof nonce must be 16..64 bytes")
    if not isinstance(public_key_raw, bytes | bytearray) or len(public_key_raw) != KEY_SIZE:
        raise error("group proof public key must be 32 bytes")
    message = b"".join(
        (_PROOF_LABEL, len(nonce).to_bytes(1, "big"), bytes(nonce), bytes(public_key_raw))
    )
    return hmac.new(group_key, message, hashlib.sha256).digest()


def _check_key(group_key: bytes) -> None:
    if not isinstance(group_key, bytes | bytearray) or len(group_key) != GROUP_KEY_SIZE:
        raise ValueError("a group key is 32 bytes (from derive_group_key)")
