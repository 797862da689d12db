"""Cross-check with an independent implementation: aioice's ``aioice.stun`` module.

Each side parses the other's messages: Binding, the TURN requests with long-term
credentials, Send/Data indications; MESSAGE-INTEGRITY and FINGERPRINT verify both ways.
"""

from __future__ import annotations

import pytest
from aioice import stun as ai

from protocol.stun import (
    Attr,
    Method,
    StunClass,
    binding_request,
    binding_success,
    long_term_key,
    new_transaction_id,
    parse_message,
    short_term_key,
)
from protocol.turn import (
    LongTermCredentials,
    allocate_request,
    channel_bind_request,
    create_permission_request,
    data_indication,
    refresh_request,
    send_indication,
)

__all__: list[str] = []

CREDS = LongTermCredentials.from_password("1700000600:peer-7", "pw/+=", "shards", "abc123")
PEER = ("203.0.113.5", 61000)


@pytest.mark.parametrize("host", ["198.51.100.23", "2001:db8::17"])
def test_aioice_parses_our_binding_success(host: str) -> None:
    txid = new_transaction_id()
    key = short_term_key("password")
    theirs = ai.parse_message(
        binding_success(txid, (host, 3478), software="shards", integrity_key=key)
    )
    assert theirs.message_method == ai.Method.BINDING
    assert theirs.message_class == ai.Class.RESPONSE
    assert theirs.transaction_id == txid
    assert theirs.attributes["XOR-MAPPED-ADDRESS"] == (host, 3478)
    assert theirs.attributes["SOFTWARE"] == "shards"
    assert "FINGERPRINT" in theirs.attributes
    assert theirs.check_message_integrity(key)


def test_we_parse_aioice_binding_messages() -> None:
    request = ai.Message(ai.Method.BINDING, ai.Class.REQUEST)
    request.attributes["USERNAME"] = "a:b"
    request.add_message_integrity(b"short-key")
    ours = parse_message(bytes(request))
    assert (ours.method, ours.cls) == (Method.BINDING, StunClass.REQUEST)
    assert ours.transaction_id == request.transaction_id
    assert ours.username() == "a:b"
    ours.check_integrity(b"short-key")

    response = ai.Message(ai.Method.BINDING, ai.Class.RESPONSE, request.transaction_id)
    response.attributes["XOR-MAPPED-ADDRESS"] = ("2001:db8::99", 5000)
    response.add_fingerprint()
    assert parse_message(bytes(response)).xor_mapped_address() == ("2001:db8::99", 5000)

    error = ai.Message(ai.Method.ALLOCATE, ai.Class.ERROR)
    error.attributes["ERROR-CODE"] = (401, "Unauthorized")
    error.attributes["REALM"] = "shards"
    error.attributes["NONCE"] = b"n0nce"
    parsed = parse_message(bytes(error))
    assert parsed.error_code() == (401, "Unauthorized")
    assert (parsed.realm(), parsed.nonce()) == ("shards", "n0nce")


def test_aioice_parses_our_binding_request() -> None:
    txid = new_transaction_id()
    theirs = ai.parse_message(binding_request(txid, software="shards"))
    assert (theirs.message_method, theirs.message_class) == (ai.Method.BINDING, ai.Class.REQUEST)
    assert theirs.transaction_id == txid


def test_aioice_parses_our_turn_requests() -> None:
    key = long_term_key(CREDS.username, CREDS.realm, "pw/+=")
    assert key == CREDS.key
    txid = new_transaction_id()
    cases = [
        (allocate_request(txid, CREDS, lifetime=600), ai.Method.ALLOCATE),
        (refresh_request(txid, CREDS, lifetime=300), ai.Method.REFRESH),
        (create_permission_request(txid, CREDS, [PEER]), ai.Method.CREATE_PERMISSION),
        (channel_bind_request(txid, CREDS, 0x4000, PEER), ai.Method.CHANNEL_BIND),
    ]
    for raw, method in cases:
        theirs = ai.parse_message(raw)
        assert theirs.message_method == method
        assert theirs.attributes["USERNAME"] == CREDS.username
        assert theirs.attributes["REALM"] == "shards"
        assert theirs.attributes["NONCE"] == b"abc123"
        assert theirs.check_message_integrity(key)
    allocate = ai.parse_message(cases[0][0])
    assert allocate.attributes["REQUESTED-TRANSPORT"] == 17 << 24
    assert allocate.attributes["LIFETIME"] == 600
    assert ai.parse_message(cases[2][0]).attributes["XOR-PEER-ADDRESS"] == PEER
    assert ai.parse_message(cases[3][0]).attributes["CHANNEL-NUMBER"] == 0x4000


def test_indications_both_ways() -> None:
    txid = new_transaction_id()
    theirs = ai.parse_message(send_indication(txid, PEER, b"hello"))
    assert (theirs.message_method, theirs.message_class) == (ai.Method.SEND, ai.Class.INDICATION)
    assert theirs.attributes["XOR-PEER-ADDRESS"] == PEER
    assert theirs.attributes["DATA"] == b"hello"
    assert ai.parse_message(data_indication(txid, PEER, b"x")).attributes["DATA"] == b"x"

    data = ai.Message(ai.Method.DATA, ai.Class.INDICATION)
    data.attributes["XOR-PEER-ADDRESS"] = PEER
    data.attributes["DATA"] = b"\x01\x02\x03"
    ours = parse_message(bytes(data))
    assert (ours.method, ours.cls) == (Method.DATA, StunClass.INDICATION)
    assert (ours.xor_peer_address(), ours.data()) == (PEER, b"\x01\x02\x03")
    assert ours.get(Attr.DATA) == b"\x01\x02\x03"


def test_aioice_turn_request_with_credentials_verifies_here() -> None:
    request = ai.Message(ai.Method.ALLOCATE, ai.Class.REQUEST)
    request.attributes["LIFETIME"] = 600
    request.attributes["REQUESTED-TRANSPORT"] = 0x11000000
    request.attributes["USERNAME"] = CREDS.username
    request.attributes["REALM"] = CREDS.realm
    request.attributes["NONCE"] = CREDS.nonce.encode()
    request.add_message_integrity(CREDS.key)
    ours = parse_message(bytes(request))
    assert (ours.requested_transport(), ours.lifetime()) == (17, 600)
    ours.check_integrity(CREDS.key)
