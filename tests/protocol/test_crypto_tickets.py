"""Peer tickets: round trip, and each way of failing with its own error class."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.crypto import (
    Identity,
    PeerTicket,
    generate_identity_key,
    issue_self_ticket,
    issue_ticket,
    peer_id,
    public_key_raw,
    ticket_digest,
    verify_self_ticket,
    verify_ticket,
)
from protocol.crypto.tickets import LOBBY_TICKET_LABEL, MAX_TICKET_TOKEN_SIZE
from protocol.errors import (
    TicketError,
    TicketExpiredError,
    TicketForgedError,
    TicketIssuerError,
    TicketMalformedError,
    TicketNotYetValidError,
    TicketTamperedError,
)

__all__: list[str] = []

NOW = 1_750_000_000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _canonical(body: dict[str, object]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@pytest.fixture(scope="module")
def lobby() -> Ed25519PrivateKey:
    return generate_identity_key()


@pytest.fixture(scope="module")
def peer() -> Identity:
    return Identity.generate()


_PLAIN: dict[str, Any] = {"character_id": 7, "character_name": "x", "faction": None, "now": NOW}


def _lobby_ticket(lobby: Ed25519PrivateKey, peer: Identity, **fields: Any) -> str:
    """A ticket from ``lobby`` for ``peer``'s keys; ``fields`` override the plain defaults."""
    return issue_ticket(
        lobby, public_key=peer.public_key, box_key=peer.box_public_key, **(_PLAIN | fields)
    )


def _self_ticket(peer: Identity, **fields: Any) -> str:
    """A self ticket ``peer`` signs for itself; ``fields`` override the plain defaults."""
    return issue_self_ticket(peer.signing_key, box_key=peer.box_public_key, **(_PLAIN | fields))


@pytest.fixture
def token(lobby: Ed25519PrivateKey, peer: Identity) -> str:
    return _lobby_ticket(
        lobby,
        peer,
        character_id=42,
        character_name="Aria Windwalker",
        faction="Order of the Dawn",
        endpoints=["127.0.0.1:40000", "[::1]:40000", "peer.lan:9000"],
        ttl=600,
    )


def _split(token: str) -> tuple[dict[str, object], str, str]:
    _, body, digest, sig = token.split(".")
    return json.loads(_unb64(body)), digest, sig


def _join(body: bytes, digest: str, sig: str) -> str:
    return ".".join(("st1", _b64(body), digest, sig))


def test_round_trip(token: str, lobby: Ed25519PrivateKey, peer: Identity) -> None:
    ticket = verify_ticket(token, public_key_raw(lobby), now=NOW + 10)
    assert isinstance(ticket, PeerTicket)
    assert ticket.kind == "lobby"
    assert ticket.character_id == 42
    assert ticket.character_name == "Aria Windwalker"
    assert ticket.faction == "Order of the Dawn"
    assert ticket.public_key_bytes == peer.public_key
    assert ticket.box_key_bytes == peer.box_public_key
    assert ticket.peer_id == peer.peer_id
    assert ticket.endpoints == ["127.0.0.1:40000", "[::1]:40000", "peer.lan:9000"]
    assert ticket.issued_at == NOW
    assert ticket.expires_at == NOW + 600
    assert ticket.issuer == peer_id(public_key_raw(lobby))
    assert token.isascii()
    assert ticket_digest(ticket) == _unb64(token.split(".")[2])


def test_encoding_is_deterministic(lobby: Ed25519PrivateKey, peer: Identity) -> None:
    def make() -> str:
        return _lobby_ticket(lobby, peer, character_id=1, character_name="B", endpoints=[], ttl=5)

    # Ed25519 signatures are deterministic too, so the whole token repeats
    assert make() == make()


def test_altered_field_is_tampered(token: str, lobby: Ed25519PrivateKey) -> None:
    body, digest, sig = _split(token)
    body["character_id"] = 1
    with pytest.raises(TicketError) as info:
        verify_ticket(_join(_canonical(body), digest, sig), public_key_raw(lobby), now=NOW)
    assert type(info.value) is TicketTamperedError


def test_altered_field_with_new_digest_is_forged(token: str, lobby: Ed25519PrivateKey) -> None:
    body, _, sig = _split(token)
    body["expires_at"] = NOW + 10**6
    raw = _canonical(body)
    forged = _join(raw, _b64(hashlib.sha256(raw).digest()), sig)
    with pytest.raises(TicketError) as info:
        verify_ticket(forged, public_key_raw(lobby), now=NOW)
    assert type(info.value) is TicketForgedError


def test_flipped_signature_is_forged(token: str, lobby: Ed25519PrivateKey) -> None:
    prefix, body, digest, sig = token.split(".")
    raw = bytearray(_unb64(sig))
    raw[5] ^= 0x01
    with pytest.raises(TicketError) as info:
        verify_ticket(
            ".".join((prefix, body, digest, _b64(bytes(raw)))), public_key_raw(lobby), now=NOW
        )
    assert type(info.value) is TicketForgedError


def test_other_key_claiming_lobby_issuer_is_forged(token: str, lobby: Ed25519PrivateKey) -> None:
    body, _, _ = _split(token)  # issuer still names the real lobby
    raw = _canonical(body)
    digest = hashlib.sha256(raw).digest()
    sig = generate_identity_key().sign(LOBBY_TICKET_LABEL + digest)
    with pytest.raises(TicketError) as info:
        verify_ticket(_join(raw, _b64(digest), _b64(sig)), public_key_raw(lobby), now=NOW)
    assert type(info.value) is TicketForgedError


def test_wrong_lobby_key_is_issuer_error(token: str) -> None:
    with pytest.raises(TicketError) as info:
        verify_ticket(token, public_key_raw(generate_identity_key()), now=NOW)
    assert type(info.value) is TicketIssuerError


def test_expired(token: str, lobby: Ed25519PrivateKey) -> None:
    verify_ticket(token, public_key_raw(lobby), now=NOW + 600)  # the last valid instant
    with pytest.raises(TicketError) as info:
        verify_ticket(token, public_key_raw(lobby), now=NOW + 600.001)
    assert type(info.value) is TicketExpiredError


def test_not_yet_valid(token: str, lobby: Ed25519PrivateKey) -> None:
    verify_ticket(token, public_key_raw(lobby), now=NOW - 5, leeway=5)
    with pytest.raises(TicketError) as info:
        verify_ticket(token, public_key_raw(lobby), now=NOW - 5.001, leeway=5)
    assert type(info.value) is TicketNotYetValidError
    with pytest.raises(TicketNotYetValidError):
        verify_ticket(token, public_key_raw(lobby), now=NOW - 1, leeway=0)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "st1",
        "st1.a.b",
        "st2.AAAA.AAAA.AAAA",
        "st1.AA==.AA.AA",
        "st1.!!!.AAAA.AAAA",
        "x" * (MAX_TICKET_TOKEN_SIZE + 1),
    ],
)
def test_malformed(bad: str, lobby: Ed25519PrivateKey) -> None:
    with pytest.raises(TicketError) as info:
        verify_ticket(bad, public_key_raw(lobby), now=NOW)
    assert type(info.value) is TicketMalformedError


def test_malformed_body_with_matching_digest(lobby: Ed25519PrivateKey) -> None:
    for raw in (b"[]", b"not json", b'{"kind":"lobby"}', b"\xff\xfe"):
        digest = _b64(hashlib.sha256(raw).digest())
        with pytest.raises(TicketError) as info:
            verify_ticket(_join(raw, digest, _b64(b"\x00" * 64)), public_key_raw(lobby), now=NOW)
        assert type(info.value) is TicketMalformedError


def test_non_canonical_body_is_malformed(token: str, lobby: Ed25519PrivateKey) -> None:
    body, _, sig = _split(token)
    raw = json.dumps(body, indent=1).encode()
    with pytest.raises(TicketMalformedError):
        verify_ticket(
            _join(raw, _b64(hashlib.sha256(raw).digest()), sig), public_key_raw(lobby), now=NOW
        )


def test_self_ticket_round_trip_and_kind_separation(
    peer: Identity, lobby: Ed25519PrivateKey
) -> None:
    token = _self_ticket(
        peer,
        character_name="Lan Player",
        endpoints=["192.168.1.20:5000"],
        ttl=60,
        group="0123456789abcdef",
    )
    ticket = verify_self_ticket(token, now=NOW)
    assert ticket.kind == "self"
    assert ticket.issuer == peer.peer_id == ticket.peer_id
    assert ticket.group == "0123456789abcdef"
    # a self ticket is never a lobby ticket, even checked against its own key
    with pytest.raises(TicketIssuerError):
        verify_ticket(token, peer.public_key, now=NOW)
    # and a lobby ticket is never a self ticket
    lobby_token = _lobby_ticket(lobby, peer)
    with pytest.raises(TicketIssuerError):
        verify_self_ticket(lobby_token, now=NOW)
    with pytest.raises(TicketExpiredError):
        verify_self_ticket(token, now=NOW + 61)


def test_self_ticket_signed_by_another_key(peer: Identity) -> None:
    token = _self_ticket(peer)
    body, _, _ = _split(token)
    impostor = Identity.generate()
    body["public_key"] = _b64(impostor.public_key)  # issuer still names the victim
    raw = _canonical(body)
    with pytest.raises(TicketIssuerError):
        verify_self_ticket(
            _join(raw, _b64(hashlib.sha256(raw).digest()), _b64(b"\0" * 64)), now=NOW
        )


@pytest.mark.parametrize(
    "field,value",
    [
        ("character_name", ""),
        ("character_name", "x" * 65),
        ("character_id", -1),
        ("endpoints", ["no-port"]),
        ("endpoints", ["host:0"]),
        ("endpoints", ["host:65536"]),
        ("endpoints", ["bad host:1"]),
        ("endpoints", ["127.0.0.1:1"] * 9),
        ("ttl", 0),
    ],
)
def test_issue_rejects_bad_fields(
    lobby: Ed25519PrivateKey, peer: Identity, field: str, value: object
) -> None:
    fields: dict[str, object] = {
        "character_id": 1,
        "character_name": "ok",
        "faction": None,
        "public_key": peer.public_key,
        "box_key": peer.box_public_key,
        "endpoints": [],
        "now": NOW,
        "ttl": 60.0,
    }
    fields[field] = value
    with pytest.raises(ValueError):
        issue_ticket(lobby, **fields)  # type: ignore[arg-type]
