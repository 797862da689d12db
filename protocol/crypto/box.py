"""End-to-end sealing of peer payloads the lobby relays but must not read.

``seal_to_peer`` encrypts to the recipient's X25519 box key (from its ticket)
and signs with the sender's Ed25519 identity; ``open_from_peer`` decrypts and
checks that the expected sender signed it. Blob layout::

    MAGIC (4) || ephemeral X25519 public key (32) || ChaCha20-Poly1305 ciphertext

* key: HKDF-SHA256(X25519(ephemeral, recipient), salt = eph_pub || recipient_pub,
  info = :data:`BOX_INFO`). A new ephemeral key per message gives a new AEAD key
  per message, so the fixed all-zero nonce never repeats under one key.
* associated data: MAGIC || eph_pub || recipient_pub (the recipient knows its key).
* plaintext under the AEAD: Ed25519 signature (64) || payload. The signature is
  over :data:`BOX_SIGN_LABEL` || recipient_pub || eph_pub || payload: it names the
  recipient (a recipient cannot re-seal it to a third party as if from the
  sender) and the ephemeral key (it belongs to this blob alone). Kept inside the
  encryption, it tells the relay nothing about who is talking.

Any failure to open (wrong recipient, wrong sender, a flipped bit, truncation,
a foreign blob) raises :class:`SealError`.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.crypto.keys import KEY_SIZE, box_public_raw
from protocol.errors import SealError

__all__ = [
    "BOX_INFO",
    "BOX_MAGIC",
    "BOX_OVERHEAD",
    "BOX_SIGN_LABEL",
    "MAX_BOX_PLAINTEXT",
    "open_from_peer",
    "seal_to_peer",
]

BOX_MAGIC = b"SB1\x00"
BOX_INFO = b"shards-of-eternity/box/v1"
BOX_SIGN_LABEL = b"shards-of-eternity/box-signature/v1\x00"
MAX_BOX_PLAINTEXT = 256 * 1024
_SIG = 64
_TAG = 16
_NONCE = b"\x00" * 12
BOX_OVERHEAD = len(BOX_MAGIC) + KEY_SIZE + _SIG + _TAG
"""Bytes a sealed blob adds to its payload."""


def seal_to_peer(
    plaintext: bytes,
    *,
    recipient_box_key: bytes,
    sender_identity_key: Ed25519PrivateKey,
) -> bytes:
    """Encrypt ``plaintext`` to a peer's raw X25519 box key, signed by the sender.

    Raises :class:`SealError` if the recipient key is unusable (it comes from a
    remote ticket) and :class:`ValueError` if the plaintext is over
    :data:`MAX_BOX_PLAINTEXT`.
    """
    if not isinstance(plaintext, bytes | bytearray):
        raise TypeError("plaintext must be bytes")
    if len(plaintext) > MAX_BOX_PLAINTEXT:
        raise ValueError(f"plaintext over {MAX_BOX_PLAINTEXT} bytes")
    recipient = _recipient_key(recipient_box_key)
    ephemeral = X25519PrivateKey.generate()
    eph_pub = box_public_raw(ephemeral)
    aead = _aead(ephemeral, recipient, eph_pub, bytes(recipient_box_key))
    signature = sender_identity_key.sign(
        _signed_message(bytes(recipient_box_key), eph_pub, bytes(plaintext))
    )
    header = BOX_MAGIC + eph_pub
    ciphertext = aead.encrypt(
        _NONCE, signature + bytes(plaintext), header + bytes(recipient_box_key)
    )
    return header + ciphertext


def open_from_peer(
    blob: bytes,
    *,
    recipient_box_private: X25519PrivateKey,
    sender_public_key_raw: bytes,
) -> bytes:
    """Decrypt a blob sealed to us and check the expected sender signed it.

    ``sender_public_key_raw`` is the raw Ed25519 key of the peer the relay
    envelope claims sent it (from that peer's verified ticket).
    """
    if not isinstance(blob, bytes | bytearray):
        raise SealError("a sealed blob is bytes")
    if len(blob) > MAX_BOX_PLAINTEXT + BOX_OVERHEAD:
        raise SealError("sealed blob too large")
    if len(blob) < BOX_OVERHEAD or bytes(blob[: len(BOX_MAGIC)]) != BOX_MAGIC:
        raise SealError("not a sealed blob")
    if (
        not isinstance(sender_public_key_raw, bytes | bytearray)
        or len(sender_public_key_raw) != KEY_SIZE
    ):
        raise SealError("sender public key must be 32 bytes")
    blob = bytes(blob)
    header_end = len(BOX_MAGIC) + KEY_SIZE
    eph_pub = blob[len(BOX_MAGIC) : header_end]
    recipient_pub = box_public_raw(recipient_box_private)
    try:
        aead = _aead(
            recipient_box_private,
            X25519PublicKey.from_public_bytes(eph_pub),
            eph_pub,
            recipient_pub,
        )
        inner = aead.decrypt(_NONCE, blob[header_end:], blob[:header_end] + recipient_pub)
    except (InvalidTag, ValueError) as exc:
        raise SealError("sealed blob does not open (not for us, or altered)") from exc
    signature, payload = inner[:_SIG], inner[_SIG:]
    try:
        Ed25519PublicKey.from_public_bytes(bytes(sender_public_key_raw)).verify(
            signature, _signed_message(recipient_pub, eph_pub, payload)
        )
    except (InvalidSignature, ValueError) as exc:
        raise SealError("sealed blob is not signed by the expected sender") from exc
    return payload


def _recipient_key(raw: bytes) -> X25519PublicKey:
    if not isinstance(raw, bytes | bytearray) or len(raw) != KEY_SIZE:
        raise SealError("recipient box key must be 32 bytes")
    return X25519PublicKey.from_public_bytes(bytes(raw))


def _aead(
    private: X25519PrivateKey,
    public: X25519PublicKey,
    eph_pub: bytes,
    recipient_pub: bytes,
) -> ChaCha20Poly1305:
    try:
        shared = private.exchange(public)
    except ValueError as exc:
        # a low-order point gives an all-zero secret; OpenSSL refuses it
        raise SealError("unusable X25519 key") from exc
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=eph_pub + recipient_pub, info=BOX_INFO
    ).derive(shared)
    return ChaCha20Poly1305(key)


def _signed_message(recipient_pub: bytes, eph_pub: bytes, payload: bytes) -> bytes:
    return BOX_SIGN_LABEL + recipient_pub + eph_pub + payload
