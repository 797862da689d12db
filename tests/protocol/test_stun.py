"""The STUN codec (protocol.stun): RFC 5769 test vectors, round trips, strict framing."""

from __future__ import annotations

import pytest

from protocol.errors import ProtocolError, StunError, StunIntegrityError
from protocol.stun import (
    HEADER_SIZE,
    Attr,
    DatagramKind,
    Method,
    StunClass,
    binding_error,
    binding_request,
    binding_success,
    classify_datagram,
    encode_message,
    error_code_value,
    is_stun,
    long_term_key,
    new_transaction_id,
    parse_message,
    short_term_key,
    text_value,
    u32_value,
    xor_address_value,
)

__all__: list[str] = []

# RFC 5769 sample messages (section 2), byte for byte; padding in 2.1 is spaces.
RFC5769_PASSWORD = "VOkJxbRl1RmTxUk/WvJxBt"
RFC5769_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74"
    "002400046e0001ff80290008932ff9b151263b36000600096576746a3a6836765920202000080014"
    "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf"
)
RFC5769_IPV4_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220"
    "002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96"
)
RFC5769_IPV6_RESPONSE = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220"
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
    "00080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c"
)
RFC5769_LONG_TERM = bytes.fromhex(
    "000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e382afe382b90000"
    "0015001c662f2f3439396b39353464364f4c33346f4c3946535476793634734100140"
    "00b6578616d706c652e6f726700"
    "00080014f67024656dd64a3e02b8e0712e85c9a28ca89666"
)
TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")


def test_rfc5769_request_with_short_term_integrity() -> None:
    message = parse_message(RFC5769_REQUEST)
    assert (message.method, message.cls) == (Method.BINDING, StunClass.REQUEST)
    assert message.transaction_id == TXID
    assert message.username() == "evtj:h6vY"
    assert message.software() == "STUN test client"
    assert message.get(Attr.PRIORITY) == bytes.fromhex("6e0001ff")
    message.check_integrity(short_term_key(RFC5769_PASSWORD))
    with pytest.raises(StunIntegrityError):
        message.check_integrity(short_term_key("wrong"))


@pytest.mark.parametrize(
    ("raw", "address"),
    [
        (RFC5769_IPV4_RESPONSE, ("192.0.2.1", 32853)),
        (RFC5769_IPV6_RESPONSE, ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
    ],
    ids=["ipv4", "ipv6"],
)
def test_rfc5769_responses(raw: bytes, address: tuple[str, int]) -> None:
    message = parse_message(raw)
    assert message.cls is StunClass.SUCCESS
    assert message.xor_mapped_address() == address
    assert message.software() == "test vector"
    message.check_integrity(short_term_key(RFC5769_PASSWORD))
    # our encoder produces the same XOR-MAPPED-ADDRESS value
    assert xor_address_value(address, TXID) == message.get(Attr.XOR_MAPPED_ADDRESS)


def test_rfc5769_long_term_credentials() -> None:
    message = parse_message(RFC5769_LONG_TERM)
    username, realm = message.username(), message.realm()
    assert (username, realm) == ("マトリックス", "example.org")
    assert message.nonce() == "f//499k954d6OL34oL9FSTvy64sA"
    assert username is not None and realm is not None
    message.check_integrity(long_term_key(username, realm, "TheMatrIX"))
    with pytest.raises(StunIntegrityError):
        message.check_integrity(long_term_key(username, realm, "TheMatrix"))


@pytest.mark.parametrize("host", ["203.0.113.7", "2001:db8::42", "fe80::1:2"])
def test_binding_round_trip(host: str) -> None:
    txid = new_transaction_id()
    request = parse_message(binding_request(txid, software="shards"))
    assert (request.method, request.cls, request.transaction_id) == (
        Method.BINDING,
        StunClass.REQUEST,
        txid,
    )
    assert request.get(Attr.FINGERPRINT) is not None
    key = b"k" * 16
    answer = parse_message(binding_success(txid, (host, 54321), software="s", integrity_key=key))
    assert answer.xor_mapped_address() == (host, 54321)
    answer.check_integrity(key)
    assert answer.has_integrity()


def test_binding_error_round_trip() -> None:
    txid = new_transaction_id()
    answer = parse_message(binding_error(txid, 420, "Unknown Attribute", unknown=[0x7777, 0x31]))
    assert answer.cls is StunClass.ERROR
    assert answer.error_code() == (420, "Unknown Attribute")
    assert answer.unknown_attributes() == [0x7777, 0x31]


def test_attributes_after_integrity_are_ignored_but_fingerprint_checked() -> None:
    txid = new_transaction_id()
    key = b"secret"
    signed = encode_message(
        Method.BINDING, StunClass.REQUEST, txid, [(Attr.SOFTWARE, b"a")], integrity_key=key
    )
    # append an unauthenticated USERNAME after MESSAGE-INTEGRITY (fix up the length)
    extra = bytes.fromhex("0006000478797a77")
    body = signed[HEADER_SIZE:] + extra
    forged = signed[:2] + len(body).to_bytes(2, "big") + signed[4:HEADER_SIZE] + body
    message = parse_message(forged)
    assert message.username() is None
    message.check_integrity(key)


def test_unknown_comprehension_required_attributes_are_reported() -> None:
    txid = new_transaction_id()
    raw = encode_message(
        Method.BINDING,
        StunClass.REQUEST,
        txid,
        [(0x7F01, b"x"), (0xC001, b"y"), (Attr.SOFTWARE, b"z")],
    )
    assert parse_message(raw).unknown_comprehension_required() == [0x7F01]


def _valid() -> bytes:
    return binding_request(TXID, software="abc")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:19], "shorter"),
        (lambda b: b"\x80" + b[1:], "top two bits"),
        (lambda b: b[:4] + b"\x21\x12\xa4\x43" + b[8:], "cookie"),
        (lambda b: b[:2] + b"\x00\x0d" + b[4:], "multiple of 4"),
        (lambda b: b[:2] + b"\x00\x04" + b[4:], "length field"),
        (lambda b: b + b"\x00\x00\x00\x00", "length field"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "FINGERPRINT does not match"),
    ],
)
def test_malformed_messages_raise_stun_error(mutate: object, reason: str) -> None:
    assert callable(mutate)
    with pytest.raises(StunError, match=reason):
        parse_message(mutate(_valid()))


def test_fingerprint_must_be_last() -> None:
    raw = encode_message(Method.BINDING, StunClass.REQUEST, TXID, fingerprint=True)
    body = raw[HEADER_SIZE:] + bytes.fromhex("80220000")
    moved = raw[:2] + len(body).to_bytes(2, "big") + raw[4:HEADER_SIZE] + body
    with pytest.raises(StunError, match="last"):
        parse_message(moved)


def test_attribute_overrun_and_truncated_header() -> None:
    overrun = encode_message(Method.BINDING, StunClass.REQUEST, TXID, [(Attr.SOFTWARE, b"abcd")])
    bad = overrun[:HEADER_SIZE] + b"\x80\x22\x00\x09" + overrun[HEADER_SIZE + 4 :]
    with pytest.raises(StunError, match="overruns"):
        parse_message(bad)


@pytest.mark.parametrize(
    ("attr", "value", "accessor"),
    [
        (Attr.XOR_MAPPED_ADDRESS, b"\x00\x01\x00", "xor_mapped_address"),
        (Attr.XOR_MAPPED_ADDRESS, b"\x00\x03\x00\x01abcd", "xor_mapped_address"),
        (Attr.XOR_PEER_ADDRESS, b"\x00\x02\x00\x01abcd", "xor_peer_address"),
        (Attr.MAPPED_ADDRESS, b"\x00\x01\x00\x01abcde", "mapped_address"),
        (Attr.ERROR_CODE, b"\x00\x00\x07\x00", "error_code"),
        (Attr.ERROR_CODE, b"\x00\x00\x04\x64", "error_code"),
        (Attr.ERROR_CODE, b"\x00\x00\x04", "error_code"),
        (Attr.ERROR_CODE, b"\x00\x00\x04\x01\xff", "error_code"),
        (Attr.UNKNOWN_ATTRIBUTES, b"\x00", "unknown_attributes"),
        (Attr.USERNAME, b"\xff\xfe", "username"),
        (Attr.USERNAME, b"u" * 514, "username"),
        (Attr.LIFETIME, b"\x00", "lifetime"),
        (Attr.CHANNEL_NUMBER, b"\x30\x00\x00\x00", "channel_number"),
        (Attr.CHANNEL_NUMBER, b"\x40\x00", "channel_number"),
        (Attr.REQUESTED_TRANSPORT, b"\x11", "requested_transport"),
    ],
)
def test_malformed_attribute_values_raise_stun_error(
    attr: int, value: bytes, accessor: str
) -> None:
    message = parse_message(
        encode_message(Method.BINDING, StunClass.SUCCESS, TXID, [(attr, value)])
    )
    with pytest.raises(StunError):
        getattr(message, accessor)()


def test_missing_integrity_and_required_attribute() -> None:
    message = parse_message(_valid())
    with pytest.raises(StunIntegrityError):
        message.check_integrity(b"key")
    with pytest.raises(StunError, match="XOR-MAPPED-ADDRESS"):
        message.require(Attr.XOR_MAPPED_ADDRESS)
    assert message.require(Attr.SOFTWARE) == b"abc"


def test_encoder_refuses_what_cannot_be_encoded() -> None:
    for call in (
        lambda: encode_message(0x1000, StunClass.REQUEST, TXID),
        lambda: encode_message(Method.BINDING, StunClass.REQUEST, b"short"),
        lambda: encode_message(Method.BINDING, StunClass.REQUEST, TXID, [(0x10000, b"")]),
        lambda: encode_message(Method.BINDING, StunClass.REQUEST, TXID, [(1, b"x" * 70000)]),
        lambda: xor_address_value(("not an ip", 1), TXID),
        lambda: xor_address_value(("1.2.3.4", 70000), TXID),
        lambda: error_code_value(200, "no"),
        lambda: text_value("x" * 800),
        lambda: u32_value(-1),
    ):
        with pytest.raises(StunError):
            call()


def test_is_stun_agrees_with_the_parser_on_framing() -> None:
    assert is_stun(_valid())
    assert not is_stun(_valid()[:-4])
    assert not is_stun(b"\x40" + _valid()[1:])
    assert issubclass(StunError, ProtocolError)


@pytest.mark.parametrize(
    ("first", "turn", "kind"),
    [
        (0, False, DatagramKind.STUN),
        (3, True, DatagramKind.STUN),
        (4, False, DatagramKind.OTHER),
        (63, False, DatagramKind.OTHER),
        (64, True, DatagramKind.CHANNEL_DATA),
        (79, True, DatagramKind.CHANNEL_DATA),
        (80, True, DatagramKind.OTHER),
        (64, False, DatagramKind.QUIC),  # a QUIC short header from a peer
        (127, False, DatagramKind.QUIC),
        (0xC3, False, DatagramKind.QUIC),  # long header, fixed bit set
        (0x83, False, DatagramKind.QUIC),  # long header, fixed bit greased
        (0xC3, True, DatagramKind.OTHER),
    ],
)
def test_classify_datagram(first: int, turn: bool, kind: DatagramKind) -> None:
    assert classify_datagram(bytes([first]) + b"rest", from_turn_server=turn) is kind


def test_classify_empty_datagram() -> None:
    assert classify_datagram(b"", from_turn_server=False) is DatagramKind.OTHER
