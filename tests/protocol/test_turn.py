"""TURN messages, ChannelData framing and REST credentials (protocol.turn)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from protocol.errors import StunError, StunIntegrityError
from protocol.stun import (
    Attr,
    Method,
    StunClass,
    encode_message,
    new_transaction_id,
    parse_message,
    u32_value,
    xor_address_value,
)
from protocol.turn import (
    REQUESTED_TRANSPORT_UDP,
    LongTermCredentials,
    TurnUrl,
    allocate_request,
    allocation_from,
    channel_bind_request,
    create_permission_request,
    data_indication,
    encode_channel_data,
    parse_channel_data,
    parse_turn_url,
    refresh_request,
    send_indication,
    turn_rest_credentials,
    turn_rest_password,
    verify_turn_rest_credentials,
)

__all__: list[str] = []

CREDS = LongTermCredentials.from_password("1700000000:peer", "pw", "shards", "nonce-1")
PEER = ("198.51.100.9", 40000)


def test_unauthenticated_allocate_then_authenticated() -> None:
    txid = new_transaction_id()
    probe = parse_message(allocate_request(txid))
    assert (probe.method, probe.cls) == (Method.ALLOCATE, StunClass.REQUEST)
    assert probe.requested_transport() == REQUESTED_TRANSPORT_UDP
    assert not probe.has_integrity()

    signed = parse_message(allocate_request(txid, CREDS, lifetime=600, dont_fragment=True))
    assert signed.username() == "1700000000:peer"
    assert (signed.realm(), signed.nonce(), signed.lifetime()) == ("shards", "nonce-1", 600)
    assert signed.get(Attr.DONT_FRAGMENT) == b""
    signed.check_integrity(CREDS.key)
    with pytest.raises(StunIntegrityError):
        signed.check_integrity(CREDS.with_nonce("x").key + b"!")


def test_refresh_permission_channel_bind() -> None:
    txid = new_transaction_id()
    refresh = parse_message(refresh_request(txid, CREDS.with_nonce("nonce-2"), lifetime=0))
    assert refresh.method == Method.REFRESH and refresh.lifetime() == 0
    assert refresh.nonce() == "nonce-2"
    refresh.check_integrity(CREDS.key)

    peers = [PEER, ("2001:db8::5", 1)]
    permission = parse_message(create_permission_request(txid, CREDS, peers))
    assert permission.method == Method.CREATE_PERMISSION
    values = [v for k, v in permission.attributes if k == Attr.XOR_PEER_ADDRESS]
    assert values == [xor_address_value(p, txid) for p in peers]
    with pytest.raises(StunError):
        create_permission_request(txid, CREDS, [])

    bind = parse_message(channel_bind_request(txid, CREDS, 0x4001, PEER))
    assert bind.method == Method.CHANNEL_BIND
    assert (bind.channel_number(), bind.xor_peer_address()) == (0x4001, PEER)
    bind.check_integrity(CREDS.key)
    for bad in (0x3FFF, 0x5000):
        with pytest.raises(StunError):
            channel_bind_request(txid, CREDS, bad, PEER)


def test_send_and_data_indications() -> None:
    txid = new_transaction_id()
    sent = parse_message(send_indication(txid, PEER, b"\x00payload", dont_fragment=True))
    assert (sent.method, sent.cls) == (Method.SEND, StunClass.INDICATION)
    assert (sent.xor_peer_address(), sent.data()) == (PEER, b"\x00payload")
    got = parse_message(data_indication(txid, PEER, b"back"))
    assert (got.method, got.cls) == (Method.DATA, StunClass.INDICATION)
    assert (got.xor_peer_address(), got.data()) == (PEER, b"back")


def test_allocation_from_success_response() -> None:
    txid = new_transaction_id()
    raw = encode_message(
        Method.ALLOCATE,
        StunClass.SUCCESS,
        txid,
        [
            (Attr.XOR_RELAYED_ADDRESS, xor_address_value(("100.64.0.10", 50000), txid)),
            (Attr.XOR_MAPPED_ADDRESS, xor_address_value(("100.64.0.2", 4000), txid)),
            (Attr.LIFETIME, u32_value(600)),
        ],
    )
    allocation = allocation_from(parse_message(raw))
    assert allocation.relayed == ("100.64.0.10", 50000)
    assert allocation.mapped == ("100.64.0.2", 4000)
    assert allocation.lifetime == 600
    no_lifetime = encode_message(Method.ALLOCATE, StunClass.SUCCESS, txid, [])
    with pytest.raises(StunError):
        allocation_from(parse_message(no_lifetime))
    with pytest.raises(StunError):
        allocation_from(parse_message(allocate_request(txid)))


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 1200])
def test_channel_data_round_trip(size: int) -> None:
    payload = bytes(range(256)) * 5
    payload = payload[:size]
    for pad in (False, True):
        frame = encode_channel_data(0x4ABC, payload, pad=pad)
        assert len(frame) % 4 == 0 or not pad
        decoded = parse_channel_data(frame)
        assert (decoded.channel, decoded.data) == (0x4ABC, payload)


@pytest.mark.parametrize(
    "frame",
    [
        b"\x40\x00\x00",
        b"\x3f\xff\x00\x00",
        b"\x50\x00\x00\x00",
        b"\x40\x00\x00\x05abcd",
        b"\x40\x00\x00\x01abcd\x00",
        b"\x40\x00\x00\x04abcd\x00",
    ],
)
def test_channel_data_malformed(frame: bytes) -> None:
    with pytest.raises(StunError):
        parse_channel_data(frame)


def test_rest_credentials_follow_the_scheme() -> None:
    creds = turn_rest_credentials("s3cret", "peer-1", now=1_700_000_000.2, ttl=600)
    assert creds.username == "1700000601:peer-1"
    assert creds.expires_at == 1_700_000_601
    mac = hmac.new(b"s3cret", creds.username.encode(), hashlib.sha1).digest()
    assert (
        creds.password
        == base64.b64encode(mac).decode()
        == turn_rest_password(b"s3cret", creds.username)
    )
    assert (
        verify_turn_rest_credentials("s3cret", creds.username, creds.password, now=1_700_000_600.9)
        == 1_700_000_601
    )


def test_rest_credentials_refused() -> None:
    creds = turn_rest_credentials("s3cret", "peer-1", now=1000, ttl=60)
    with pytest.raises(StunIntegrityError, match="expired"):
        verify_turn_rest_credentials("s3cret", creds.username, creds.password, now=1060)
    with pytest.raises(StunIntegrityError, match="match"):
        verify_turn_rest_credentials("other", creds.username, creds.password, now=1000)
    with pytest.raises(StunIntegrityError, match="match"):
        verify_turn_rest_credentials("s3cret", "9999:peer-1", creds.password, now=1000)
    with pytest.raises(StunError, match="expiry"):
        verify_turn_rest_credentials("s3cret", "peer-1", creds.password, now=1000)
    for bad in (
        lambda: turn_rest_credentials("", "a", now=0, ttl=1),
        lambda: turn_rest_credentials("s", "a:b", now=0, ttl=1),
        lambda: turn_rest_credentials("s", "", now=0, ttl=1),
        lambda: turn_rest_credentials("s", "a", now=0, ttl=0),
        lambda: turn_rest_credentials("s", "a", now=float("nan"), ttl=1),
    ):
        with pytest.raises(StunError):
            bad()


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("turn:100.64.0.10:3478?transport=udp", TurnUrl(False, "100.64.0.10", 3478, "udp")),
        ("turn:turn.example.com", TurnUrl(False, "turn.example.com", 3478, "udp")),
        ("turns:turn.example.com", TurnUrl(True, "turn.example.com", 5349, "tcp")),
        ("turn:[2001:db8::1]:3479?transport=tcp", TurnUrl(False, "2001:db8::1", 3479, "tcp")),
    ],
)
def test_turn_urls_parse(url: str, parsed: TurnUrl) -> None:
    assert parse_turn_url(url) == parsed


@pytest.mark.parametrize(
    "url",
    [
        "stun:host:3478",
        "turn:",
        "turn:host:0",
        "turn:host:70000",
        "turn:host:x",
        "turn:host?transport=sctp",
        "turn:[2001:db8::1",
        "turn:[::1]x",
    ],
)
def test_bad_turn_urls_are_refused(url: str) -> None:
    with pytest.raises(StunError):
        parse_turn_url(url)
