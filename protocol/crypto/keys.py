"""Node identity keys: an Ed25519 signing key and the X25519 "box" key derived from it.

A node has one secret, the 32-byte Ed25519 seed. Its X25519 key for end-to-end
sealing (:mod:`protocol.crypto.box`) is derived from that seed with HKDF-SHA256
under a fixed label, so persisting the Ed25519 key persists both, and a box key
can never drift away from the identity it belongs to. HKDF output under its own
label is independent of the SHA-512 expansion Ed25519 applies to the same seed.

``peer_id`` is the stable public fingerprint of an identity: the first 16 bytes
of SHA-256 over the raw 32-byte Ed25519 public key, as 32 lowercase hex digits.

Functions here take keys the caller already holds; a wrong length or type is a
programming error and raises :class:`ValueError` / :class:`TypeError`, while
key material that fails to load (a corrupt or foreign file) raises
:class:`~protocol.errors.CryptoError`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.errors import CryptoError

__all__ = [
    "BOX_KEY_INFO",
    "KEY_SIZE",
    "PEER_ID_HEX_LENGTH",
    "Identity",
    "box_private_key",
    "box_public_raw",
    "generate_identity_key",
    "load_private_key_pem",
    "load_private_key_raw",
    "dump_private_key_pem",
    "dump_private_key_raw",
    "peer_id",
    "public_key_raw",
]

KEY_SIZE = 32
"""Length of every raw Ed25519 / X25519 key, public or private."""

PEER_ID_HEX_LENGTH = 32
"""``peer_id`` is 16 bytes of SHA-256, hex encoded."""

BOX_KEY_INFO = b"shards-of-eternity/box-key/v1"
"""HKDF ``info`` deriving the X25519 box key from the Ed25519 seed."""


def generate_identity_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 identity key from the OS random generator."""
    return Ed25519PrivateKey.generate()


def public_key_raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte Ed25519 public key of ``key``."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def peer_id(public_key_raw: bytes) -> str:
    """Stable fingerprint of a raw Ed25519 public key (32 lowercase hex digits)."""
    _check_len(public_key_raw, "public key")
    return hashlib.sha256(public_key_raw).digest()[:16].hex()


def dump_private_key_raw(key: Ed25519PrivateKey) -> bytes:
    """The 32-byte Ed25519 seed; the caller stores it as a secret."""
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def load_private_key_raw(data: bytes) -> Ed25519PrivateKey:
    """Load a 32-byte Ed25519 seed (raises :class:`CryptoError` if unusable)."""
    if not isinstance(data, bytes | bytearray) or len(data) != KEY_SIZE:
        raise CryptoError("an Ed25519 private key is 32 raw bytes")
    return Ed25519PrivateKey.from_private_bytes(bytes(data))


def dump_private_key_pem(key: Ed25519PrivateKey, *, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM of ``key``, encrypted with ``password`` when one is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_private_key_pem(data: bytes, *, password: bytes | None = None) -> Ed25519PrivateKey:
    """Load a PKCS#8 PEM Ed25519 key (raises :class:`CryptoError` if unusable)."""
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CryptoError(f"cannot load the private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CryptoError("the PEM key is not an Ed25519 key")
    return key


def box_private_key(identity_key: Ed25519PrivateKey) -> X25519PrivateKey:
    """The X25519 box key of an identity, derived from its Ed25519 seed (deterministic)."""
    seed = dump_private_key_raw(identity_key)
    derived = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=BOX_KEY_INFO).derive(
        seed
    )
    return X25519PrivateKey.from_private_bytes(derived)


def box_public_raw(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    """The raw 32-byte X25519 public key of ``key``."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class Identity:
    """A node's identity: the Ed25519 signing key and everything derived from it.

    ``Identity.generate()`` for a new node; ``Identity.from_raw(seed)`` or
    ``Identity.from_pem(pem)`` to restore one that the caller persisted with
    :meth:`to_raw` / :meth:`to_pem`.
    """

    signing_key: Ed25519PrivateKey = field(repr=False)
    box_key: X25519PrivateKey = field(init=False, repr=False)
    public_key: bytes = field(init=False)
    box_public_key: bytes = field(init=False)
    peer_id: str = field(init=False)

    def __post_init__(self) -> None:
        box = box_private_key(self.signing_key)
        public = public_key_raw(self.signing_key)
        object.__setattr__(self, "box_key", box)
        object.__setattr__(self, "public_key", public)
        object.__setattr__(self, "box_public_key", box_public_raw(box))
        object.__setattr__(self, "peer_id", peer_id(public))

    @classmethod
    def generate(cls) -> Identity:
        """A new random identity."""
        return cls(generate_identity_key())

    @classmethod
    def from_raw(cls, seed: bytes) -> Identity:
        """Restore from the 32-byte seed written by :meth:`to_raw`."""
        return cls(load_private_key_raw(seed))

    @classmethod
    def from_pem(cls, data: bytes, *, password: bytes | None = None) -> Identity:
        """Restore from the PEM written by :meth:`to_pem`."""
        return cls(load_private_key_pem(data, password=password))

    def to_raw(self) -> bytes:
        """The 32-byte secret seed (store it as a secret)."""
        return dump_private_key_raw(self.signing_key)

    def to_pem(self, *, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM of the signing key, encrypted if ``password`` is given."""
        return dump_private_key_pem(self.signing_key, password=password)


def _check_len(data: bytes, what: str) -> None:
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"{what} must be bytes")
    if len(data) != KEY_SIZE:
        raise ValueError(f"{what} must be {KEY_SIZE} bytes, got {len(data)}")
