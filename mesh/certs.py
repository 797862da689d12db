"""A self-signed TLS certificate per node, carrying the node's identity key.

Peers do not rely on certificate authorities: who a peer is comes from its
ticket and the challenge handshake (:mod:`mesh.handshake`). The certificate
still matters: it is signed with, and names, the node's Ed25519 identity key,
so a dialler can check that the TLS endpoint holds the key its ticket names
(no relay in the middle can terminate TLS with someone else's ticket).
Ed25519 certificates cost the same as P-256 in aioquic (docs/architecture.md, "QUIC facts").
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

__all__ = ["ALPN", "make_certificate"]

ALPN = "shards/1"
"""The mesh's own ALPN: nothing else speaks it, and a peer that does not is refused by TLS."""


def make_certificate(
    key: Ed25519PrivateKey,
    *,
    common_name: str,
    now: datetime.datetime | None = None,
    valid_days: int = 30,
) -> x509.Certificate:
    """A self-signed certificate for ``key`` (the node's identity key).

    ``common_name`` is informational (the node's peer id); the validity window
    starts a day in the past to tolerate clock skew.
    """
    when = now if now is not None else datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(when - datetime.timedelta(days=1))
        .not_valid_after(when + datetime.timedelta(days=valid_days))
        .sign(key, algorithm=None)
    )
