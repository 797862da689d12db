"""Pure crypto of the Shards of Eternity protocol: identities, tickets, handshakes, sealing.

No I/O and no clock reads: every time-dependent call takes ``now`` (unix seconds).

* ``b64url_encode`` / ``b64url_decode``: the strict unpadded base64url text form of keys.
* :mod:`.keys`: Ed25519 identity, derived X25519 box key, ``peer_id``, persistence.
* :mod:`.tickets`: lobby-signed and self-signed peer tickets.
* :mod:`.challenge`: domain-separated handshake challenges.
* :mod:`.group`: LAN group key (PBKDF2-SHA256, 100,000), tag and proof.
* :mod:`.sealing`: the seed's Fernet layer with an explicit clock.
* :mod:`.box`: end-to-end sealing of relayed peer payloads.

Errors: data from a remote party that does not verify raises the
:class:`~protocol.errors.CryptoError` subclass of its check (``TicketError``
subclasses, ``ChallengeError``, ``SealError``). Misuse by the local caller (a
key of the wrong length, a non-finite ``now``) raises ``ValueError``/``TypeError``.
"""

from __future__ import annotations

from protocol.crypto._b64 import b64url_decode, b64url_encode
from protocol.crypto.box import BOX_OVERHEAD, MAX_BOX_PLAINTEXT, open_from_peer, seal_to_peer
from protocol.crypto.challenge import (
    NONCE_SIZE,
    handshake_context,
    new_nonce,
    sign_challenge,
    verify_challenge,
)
from protocol.crypto.group import (
    GROUP_SALT,
    PBKDF2_ITERATIONS,
    derive_group_key,
    group_proof,
    group_tag,
    verify_group_proof,
)
from protocol.crypto.keys import (
    Identity,
    box_private_key,
    box_public_raw,
    dump_private_key_pem,
    dump_private_key_raw,
    generate_identity_key,
    load_private_key_pem,
    load_private_key_raw,
    peer_id,
    public_key_raw,
)
from protocol.crypto.sealing import WS_FERNET_SALT, FernetSealer, derive_fernet_key
from protocol.crypto.tickets import (
    DEFAULT_TICKET_LEEWAY,
    DEFAULT_TICKET_TTL,
    MAX_TICKET_TOKEN_SIZE,
    PeerTicket,
    issue_self_ticket,
    issue_ticket,
    ticket_digest,
    verify_self_ticket,
    verify_ticket,
)

__all__ = [
    "BOX_OVERHEAD",
    "DEFAULT_TICKET_LEEWAY",
    "DEFAULT_TICKET_TTL",
    "GROUP_SALT",
    "MAX_BOX_PLAINTEXT",
    "MAX_TICKET_TOKEN_SIZE",
    "NONCE_SIZE",
    "PBKDF2_ITERATIONS",
    "WS_FERNET_SALT",
    "FernetSealer",
    "Identity",
    "PeerTicket",
    "b64url_decode",
    "b64url_encode",
    "box_private_key",
    "box_public_raw",
    "derive_fernet_key",
    "derive_group_key",
    "dump_private_key_pem",
    "dump_private_key_raw",
    "generate_identity_key",
    "group_proof",
    "group_tag",
    "handshake_context",
    "issue_self_ticket",
    "issue_ticket",
    "load_private_key_pem",
    "load_private_key_raw",
    "new_nonce",
    "open_from_peer",
    "peer_id",
    "public_key_raw",
    "seal_to_peer",
    "sign_challenge",
    "ticket_digest",
    "verify_challenge",
    "verify_group_proof",
    "verify_self_ticket",
    "verify_ticket",
]
