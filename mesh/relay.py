"""Relay envelopes: what the node hands the lobby relay when there is no direct path.

Layout (opaque to the lobby)::

    b"SR1" | credential_len:u16 | credential (the sender's ticket) | sealed

``sealed`` is :func:`protocol.crypto.seal_to_peer` of one frame (``kind`` byte
and body, see :mod:`mesh.streams`) to the recipient's X25519 box key, signed by
the sender's identity key. The recipient checks the credential like in a
handshake and opens the blob with the credential's public key as the expected
sender: the lobby can neither read, alter nor re-attribute a relayed message.
Replays are dropped by the same per-sender dedupe as on streams.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from mesh.auth import PeerIdentity
from protocol.crypto import open_from_peer, seal_to_peer
from protocol.errors import DecodeError

__all__ = ["RELAY_MAGIC", "open_envelope", "parse_envelope", "seal_envelope"]

RELAY_MAGIC = b"SR1"
_LEN = struct.Struct("!H")


def seal_envelope(
    kind: int,
    body: bytes,
    *,
    credential: str,
    recipient: PeerIdentity,
    sender_key: Ed25519PrivateKey,
) -> bytes:
    """One sealed relay envelope carrying a frame to ``recipient``."""
    cred = credential.encode("ascii")
    sealed = seal_to_peer(
        bytes((kind,)) + body, recipient_box_key=recipient.box_key, sender_identity_key=sender_key
    )
    return RELAY_MAGIC + _LEN.pack(len(cred)) + cred + sealed


def parse_envelope(data: bytes) -> tuple[str, bytes]:
    """``(credential, sealed)`` of an envelope; raises :class:`DecodeError`."""
    head = len(RELAY_MAGIC) + _LEN.size
    if len(data) < head or data[: len(RELAY_MAGIC)] != RELAY_MAGIC:
        raise DecodeError("not a relay envelope")
    (length,) = _LEN.unpack_from(data, len(RELAY_MAGIC))
    if len(data) < head + length:
        raise DecodeError("truncated relay envelope")
    try:
        credential = data[head : head + length].decode("ascii")
    except UnicodeDecodeError as exc:
        raise DecodeError("relay credential is not ASCII") from exc
    return credential, data[head + length :]


def open_envelope(
    sealed: bytes, *, sender: PeerIdentity, recipient_key: X25519PrivateKey
) -> tuple[int, bytes]:
    """``(kind, body)`` of a sealed frame; raises ``SealError`` / :class:`DecodeError`."""
    plain = open_from_peer(
        sealed, recipient_box_private=recipient_key, sender_public_key_raw=sender.public_key
    )
    if not plain:
        raise DecodeError("empty relayed frame")
    return plain[0], plain[1:]
