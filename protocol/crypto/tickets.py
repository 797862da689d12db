"""Signed peer tickets: who a peer is, vouched for by the lobby (or, on a LAN, by itself).

Token format (ASCII, at most :data:`MAX_TICKET_TOKEN_SIZE` characters)::

    st1.<body>.<digest>.<signature>          each part unpadded base64url

* ``body``: the canonical JSON of :class:`PeerTicket` (sorted keys, no spaces,
  ASCII only, no NaN). Canonical means one ticket has exactly one body, so
  :func:`ticket_digest` of a verified ticket equals the digest in its token.
* ``digest``: SHA-256 of the body bytes.
* ``signature``: Ed25519 over ``LABEL || digest``, where the label differs for
  lobby-issued and self-issued tickets (domain separation).

Verification order, each failure with its own error class:

1. size, shape, base64, part lengths -> :class:`TicketMalformedError`
2. SHA-256(body) differs from the digest -> :class:`TicketTamperedError`
3. body is not a canonical ticket of the expected kind -> :class:`TicketMalformedError`
4. ``issuer`` is not the trusted key's peer id -> :class:`TicketIssuerError`
5. the signature does not verify under the trusted key -> :class:`TicketForgedError`
6. ``now > expires_at`` -> :class:`TicketExpiredError`;
   ``now < issued_at - leeway`` -> :class:`TicketNotYetValidError`

Lobby tickets (``kind="lobby"``) are checked against the lobby public key the
caller trusts. Self-issued LAN tickets (``kind="self"``) are signed by the
node's own identity key, so ``issuer == peer_id(public_key)``; such a ticket only
proves key possession and the claims a node makes about itself; admission to a
LAN group is proven separately (:func:`protocol.crypto.group.group_proof`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from protocol.crypto._b64 import b64url_decode, b64url_encode
from protocol.crypto.keys import KEY_SIZE, peer_id, public_key_raw
from protocol.errors import (
    TicketExpiredError,
    TicketForgedError,
    TicketIssuerError,
    TicketMalformedError,
    TicketNotYetValidError,
    TicketTamperedError,
)

__all__ = [
    "DEFAULT_TICKET_LEEWAY",
    "DEFAULT_TICKET_TTL",
    "LOBBY_TICKET_LABEL",
    "MAX_ENDPOINTS",
    "MAX_TICKET_TOKEN_SIZE",
    "SELF_TICKET_LABEL",
    "TICKET_PREFIX",
    "PeerTicket",
    "TicketKind",
    "issue_self_ticket",
    "issue_ticket",
    "ticket_digest",
    "verify_self_ticket",
    "verify_ticket",
]

TICKET_PREFIX = "st1"
MAX_TICKET_TOKEN_SIZE = 4096
"""Longest token accepted; checked before anything is decoded."""
MAX_ENDPOINTS = 8
DEFAULT_TICKET_TTL = 3600.0
DEFAULT_TICKET_LEEWAY = 30.0
"""Seconds a ticket's ``issued_at`` may lie in the verifier's future (clock skew)."""
LOBBY_TICKET_LABEL = b"shards-of-eternity/peer-ticket/lobby/v1\x00"
SELF_TICKET_LABEL = b"shards-of-eternity/peer-ticket/self/v1\x00"

TicketKind = Literal["lobby", "self"]

_DIGEST_SIZE = 32
_SIGNATURE_SIZE = 64
_HEX_ID = re.compile(r"[0-9a-f]{32}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_LABELS: dict[str, bytes] = {"lobby": LOBBY_TICKET_LABEL, "self": SELF_TICKET_LABEL}


def _raw_key(value: str) -> str:
    try:
        raw = b64url_decode(value)
    except ValueError as exc:
        raise ValueError("key must be unpadded base64url") from exc
    if len(raw) != KEY_SIZE:
        raise ValueError(f"key must encode {KEY_SIZE} bytes")
    return value


def _endpoint(value: str) -> str:
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise ValueError("endpoint must be host:port")
    port = int(port_text)
    if not 1 <= port <= 65535 or port_text != str(port):
        raise ValueError("endpoint port must be 1..65535")
    if host.startswith("[") and host.endswith("]"):
        ipaddress.IPv6Address(host[1:-1])
    elif _HOSTNAME.fullmatch(host) is None:
        raise ValueError("endpoint host must be a hostname, IPv4 or [IPv6]")
    return value


_B64Key = Annotated[str, Field(min_length=43, max_length=43), AfterValidator(_raw_key)]
_Endpoint = Annotated[str, Field(min_length=3, max_length=262), AfterValidator(_endpoint)]
_Time = Annotated[float, Field(allow_inf_nan=False, ge=0)]


class PeerTicket(BaseModel):
    """The signed claims about one peer. Immutable; build one only via ``issue_*``/``verify_*``.

    ``public_key`` (Ed25519) and ``box_key`` (X25519) are unpadded base64url of the
    raw 32 bytes; :attr:`public_key_bytes` / :attr:`box_key_bytes` decode them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    kind: TicketKind
    character_id: int = Field(ge=0, le=2**32 - 1)
    character_name: str = Field(min_length=1, max_length=64)
    faction: str | None = Field(default=None, min_length=1, max_length=64)
    public_key: _B64Key
    box_key: _B64Key
    endpoints: list[_Endpoint] = Field(default_factory=list, max_length=MAX_ENDPOINTS)
    issued_at: _Time
    expires_at: _Time
    issuer: str = Field(min_length=32, max_length=32)
    group: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("issuer")
    @classmethod
    def _issuer_is_peer_id(cls, value: str) -> str:
        if _HEX_ID.fullmatch(value) is None:
            raise ValueError("issuer must be a peer id (32 lowercase hex digits)")
        return value

    @field_validator("character_name", "faction", "group")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must be printable text")
        return value

    @model_validator(mode="after")
    def _times_ordered(self) -> PeerTicket:
        if self.expires_at <= self.issued_at:
            raise ValueError("expires_at must be after issued_at")
        return self

    @property
    def public_key_bytes(self) -> bytes:
        """Raw 32-byte Ed25519 public key of the peer."""
        return b64url_decode(self.public_key)

    @property
    def box_key_bytes(self) -> bytes:
        """Raw 32-byte X25519 public key to seal payloads to this peer."""
        return b64url_decode(self.box_key)

    @property
    def peer_id(self) -> str:
        """The peer id of the ticket's identity key."""
        return peer_id(self.public_key_bytes)

    def canonical_bytes(self) -> bytes:
        """The one canonical body encoding (the bytes the digest covers)."""
        return _canonical_json(self.model_dump(mode="json"))


def ticket_digest(ticket: PeerTicket) -> bytes:
    """SHA-256 of the ticket's canonical body: the value its signature covers.

    Bind handshake challenges to it (see :func:`protocol.crypto.challenge.handshake_context`).
    """
    return hashlib.sha256(ticket.canonical_bytes()).digest()


def issue_ticket(
    signing_key: Ed25519PrivateKey,
    *,
    character_id: int,
    character_name: str,
    faction: str | None,
    public_key: bytes,
    box_key: bytes,
    endpoints: list[str] | tuple[str, ...] = (),
    now: float,
    ttl: float = DEFAULT_TICKET_TTL,
    group: str | None = None,
) -> str:
    """A lobby ticket for a peer's identity, signed with the lobby's ``signing_key``.

    ``public_key`` / ``box_key`` are the peer's raw 32-byte Ed25519 / X25519 keys.
    Invalid fields raise :class:`ValueError` (this is the issuer's own input).
    """
    return _issue(
        signing_key,
        kind="lobby",
        character_id=character_id,
        character_name=character_name,
        faction=faction,
        public_key=public_key,
        box_key=box_key,
        endpoints=endpoints,
        now=now,
        ttl=ttl,
        group=group,
    )


def issue_self_ticket(
    identity_key: Ed25519PrivateKey,
    *,
    character_id: int,
    character_name: str,
    faction: str | None,
    box_key: bytes,
    endpoints: list[str] | tuple[str, ...] = (),
    now: float,
    ttl: float = DEFAULT_TICKET_TTL,
    group: str | None = None,
) -> str:
    """A LAN ticket a node signs for itself (``issuer`` is its own peer id).

    ``group`` is normally the LAN :func:`~protocol.crypto.group.group_tag`;
    membership itself is proven in the handshake with a group proof.
    """
    return _issue(
        identity_key,
        kind="self",
        character_id=character_id,
        character_name=character_name,
        faction=faction,
        public_key=public_key_raw(identity_key),
        box_key=box_key,
        endpoints=endpoints,
        now=now,
        ttl=ttl,
        group=group,
    )


def verify_ticket(
    token: str,
    trusted_issuer_public_key: bytes | Iterable[bytes],
    *,
    now: float,
    leeway: float = DEFAULT_TICKET_LEEWAY,
) -> PeerTicket:
    """Verify a lobby ticket against the trusted lobby public key (raw 32 bytes).

    ``trusted_issuer_public_key`` may also be several keys (a lobby rotating its
    key trusts the new one and, until its tickets expire, the old): the ticket's
    ``issuer`` picks which one it must verify under.

    Raises exactly one :class:`~protocol.errors.TicketError` subclass per failure
    (see the module docstring); returns the ticket when every check passes.
    """
    keys = (
        [trusted_issuer_public_key]
        if isinstance(trusted_issuer_public_key, bytes | bytearray)
        else list(trusted_issuer_public_key)
    )
    if not keys or any(len(k) != KEY_SIZE for k in keys):
        raise ValueError("the trusted issuer keys must be 32 raw bytes each")
    by_issuer = {peer_id(bytes(k)): bytes(k) for k in keys}
    return _verify(
        token,
        "lobby",
        lambda ticket: by_issuer.get(ticket.issuer, bytes(keys[0])),
        now=now,
        leeway=leeway,
        wrong_issuer="ticket issued by another key than the trusted lobby key",
    )


def verify_self_ticket(
    token: str,
    *,
    now: float,
    leeway: float = DEFAULT_TICKET_LEEWAY,
) -> PeerTicket:
    """Verify a self-issued LAN ticket: signed by the very key it names.

    Only proves that the holder of ``public_key`` made these claims; pair it with a
    handshake challenge (key possession now) and a group proof (LAN membership).
    """
    return _verify(
        token,
        "self",
        lambda ticket: ticket.public_key_bytes,
        now=now,
        leeway=leeway,
        wrong_issuer="self-issued ticket whose issuer is not its own key",
    )


def _verify(
    token: str,
    kind: TicketKind,
    signer_of: Callable[[PeerTicket], bytes],
    *,
    now: float,
    leeway: float,
    wrong_issuer: str,
) -> PeerTicket:
    """Parse ``token`` as a ``kind`` ticket; check that the key ``signer_of`` names for it
    is its issuer and signed it, and that it is valid at ``now``."""
    ticket, digest, signature = _parse(token, kind)
    key = signer_of(ticket)
    if ticket.issuer != peer_id(key):
        raise TicketIssuerError(wrong_issuer, details={"issuer": ticket.issuer})
    _check_signature(key, kind, digest, signature)
    _check_times(ticket, now, leeway)
    return ticket


def _issue(
    signing_key: Ed25519PrivateKey,
    *,
    kind: TicketKind,
    character_id: int,
    character_name: str,
    faction: str | None,
    public_key: bytes,
    box_key: bytes,
    endpoints: list[str] | tuple[str, ...],
    now: float,
    ttl: float,
    group: str | None,
) -> str:
    if not (math.isfinite(now) and math.isfinite(ttl)) or ttl <= 0:
        raise ValueError("now must be finite and ttl positive")
    if len(public_key) != KEY_SIZE or len(box_key) != KEY_SIZE:
        raise ValueError("public_key and box_key must be 32 raw bytes")
    issued_at = float(now)
    ticket = PeerTicket(
        kind=kind,
        character_id=character_id,
        character_name=character_name,
        faction=faction,
        public_key=b64url_encode(public_key),
        box_key=b64url_encode(box_key),
        endpoints=list(endpoints),
        issued_at=issued_at,
        expires_at=issued_at + float(ttl),
        issuer=peer_id(public_key_raw(signing_key)),
        group=group,
    )
    body = ticket.canonical_bytes()
    digest = hashlib.sha256(body).digest()
    signature = signing_key.sign(_LABELS[kind] + digest)
    token = ".".join(
        (TICKET_PREFIX, b64url_encode(body), b64url_encode(digest), b64url_encode(signature))
    )
    if len(token) > MAX_TICKET_TOKEN_SIZE:
        raise ValueError("ticket exceeds MAX_TICKET_TOKEN_SIZE; shorten names or endpoints")
    return token


def _parse(token: object, kind: TicketKind) -> tuple[PeerTicket, bytes, bytes]:
    if not isinstance(token, str):
        raise TicketMalformedError("a ticket is a str token")
    if len(token) > MAX_TICKET_TOKEN_SIZE:
        raise TicketMalformedError("ticket token too long")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != TICKET_PREFIX:
        raise TicketMalformedError("not a peer ticket token")
    try:
        body, digest, signature = (b64url_decode(part) for part in parts[1:])
    except ValueError as exc:
        raise TicketMalformedError("ticket part is not base64url") from exc
    if not body or len(digest) != _DIGEST_SIZE or len(signature) != _SIGNATURE_SIZE:
        raise TicketMalformedError("ticket part has the wrong length")
    if hashlib.sha256(body).digest() != digest:
        raise TicketTamperedError("ticket body does not match its digest")
    try:
        ticket = PeerTicket.model_validate(json.loads(body.decode("utf-8")))
    except (ValueError, ValidationError, RecursionError) as exc:
        raise TicketMalformedError("ticket body is not a valid ticket") from exc
    if ticket.canonical_bytes() != body:
        raise TicketMalformedError("ticket body is not canonical")
    if ticket.kind != kind:
        raise TicketIssuerError(
            f"expected a {kind}-issued ticket, got a {ticket.kind}-issued one",
            details={"kind": ticket.kind},
        )
    return ticket, digest, signature


def _check_signature(key: bytes, kind: TicketKind, digest: bytes, signature: bytes) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, _LABELS[kind] + digest)
    except (InvalidSignature, ValueError) as exc:
        raise TicketForgedError("ticket signature is not the issuer's") from exc


def _check_times(ticket: PeerTicket, now: float, leeway: float) -> None:
    if not math.isfinite(now):
        raise ValueError("now must be a finite unix time")
    if now > ticket.expires_at:
        raise TicketExpiredError(
            "ticket has expired", details={"expires_at": ticket.expires_at, "now": now}
        )
    if now < ticket.issued_at - leeway:
        raise TicketNotYetValidError(
            "ticket is not valid yet", details={"issued_at": ticket.issued_at, "now": now}
        )


def _canonical_json(data: Any) -> bytes:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")
