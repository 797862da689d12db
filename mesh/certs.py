"""A self-signed TLS certificate per node, carrying the node's identity key.

Peers do not rely on certificate authorities: who a peer is comes from its
ticket and the challenge handshake (:mod:`mesh.handshake`). The certificate
still matters: it is signed with, and names, the node's Ed25519 identity key,
so a dialler can check that the TLS endpoint holds the key its ticket names
(no relay in the middle can terminate TLS with someone else's ticket).
Ed25519 certificates cost aioquic no more than P-256 ones.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

__all__ = ["ALPN", "make_certificate"]

_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)

ALPN = "shards/1"
"""The mesh's own ALPN: nothing else speaks it, and a peer that does not is refused by TLS."""


def make_certificate(key: Ed25519PrivateKey, *, common_name: str) -> x509.Certificate:
    """A self-signed certificate for ``key`` (the node's identity key).

    ``common_name`` is informational (the node's peer id). The validity window
    is fixed and wide (RFC 5280's "no well-defined expiration date"): nobody
    checks it (peers verify the key, not a chain), a node's lifetime is its
    ticket's, and making it reads no clock, so the sans-I/O core stays pure.
    """
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .sign(key, algorithm=None)
    )
