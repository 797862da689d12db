"""Connectivity candidates: shape, address policy, priorities, and PEER_INFO 1.1."""

from __future__ import annotations

import ipaddress
import json
import re

import pytest
from pydantic import ValidationError

from protocol.candidates import (
    ADDRESS_PATTERN,
    IP_ENDPOINT_PATTERN,
    MAX_CANDIDATES,
    Candidate,
    CandidateKind,
    candidate_priority,
    check_candidate,
    check_candidates,
    endpoint_candidate,
    parse_ip_endpoint,
)
from protocol.codec import deserialize, serialize
from protocol.messages.peer import PeerInfoMessage


def cand(address: str, port: int = 4000, kind: str = "host", priority: int = 1) -> Candidate:
    return Candidate.model_validate(
        {"kind": kind, "address": address, "port": port, "priority": priority}
    )


def test_priority_is_rfc_8445s_formula() -> None:
    assert candidate_priority(CandidateKind.HOST) == (126 << 24) + (65535 << 8) + 255
    assert candidate_priority(CandidateKind.RELAY, local_preference=0, component=256) == 0
    order = [candidate_priority(k) for k in (CandidateKind.HOST, CandidateKind.SRFLX)]
    assert order[0] > order[1] > candidate_priority(CandidateKind.RELAY)
    with pytest.raises(ValueError):
        candidate_priority(CandidateKind.HOST, local_preference=70000)


@pytest.mark.parametrize(
    "fields",
    [
        {"address": "peer.example"},
        {"address": "10.0.0.1%eth0"},
        {"address": "fe80::1%eth0"},
        {"address": "1.2.3"},
        {"port": 0},
        {"port": 65536},
        {"port": "4000"},
        {"port": True},
        {"port": 4000.5},
        {"priority": -1},
        {"priority": 2**31},
        {"kind": "prflx"},
        {"extra": True},
    ],
)
def test_the_model_refuses_what_is_not_a_candidate(fields: dict[str, object]) -> None:
    base = {"kind": "srflx", "address": "198.51.100.1", "port": 4000, "priority": 5}
    with pytest.raises(ValidationError):
        Candidate.model_validate({**base, **fields})


def test_every_address_the_pattern_admits_parses_and_back() -> None:
    pattern = re.compile(ADDRESS_PATTERN)
    admitted = ["0.0.0.0", "255.255.255.255", "::", "::1", "1::", "1:2:3:4:5:6:7:8", "a::b:c"]  # noqa: S104
    for text in admitted:
        assert pattern.match(text), text
        assert cand(text).address == str(ipaddress.ip_address(text))
    for text in ("01.2.3.4", "256.1.1.1", "1.2.3", "::ffff:1.2.3.4", "fe80::1%1", "1:2"):
        assert not pattern.match(text), text
    endpoint = re.compile(IP_ENDPOINT_PATTERN)
    assert endpoint.match("[::1]:1") and endpoint.match("10.0.0.1:65535")
    assert not endpoint.match("10.0.0.1:65536") and not endpoint.match("host:1")


def test_addresses_are_kept_canonical_and_endpoints_parse_strictly() -> None:
    assert cand("2001:DB8:0:0::1").address == "2001:db8::1"
    assert cand("2001:db8::1").endpoint == "[2001:db8::1]:4000"
    assert parse_ip_endpoint("[2001:db8::1]:9") == ("2001:db8::1", 9)
    assert endpoint_candidate("192.0.2.1:7000").kind is CandidateKind.HOST
    for bad in ("peer.example:4000", "2001:db8::1:4000", "[192.0.2.1]:4", "192.0.2.1", "1.2.3.4:0"):
        with pytest.raises(ValueError):
            parse_ip_endpoint(bad)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address value
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("ff02::fb", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("240.0.0.1", "reserved"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:7f00:1", "loopback"),
        ("::ffff:0:0", "unspecified"),
    ],
)
def test_the_lobby_policy_refuses_unusable_addresses(address: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_candidate(cand(address), allow_loopback=False)


def test_loopback_only_when_allowed_and_public_or_private_always() -> None:
    check_candidate(cand("127.0.0.1"), allow_loopback=True)
    check_candidate(cand("::1"), allow_loopback=True)
    for ok in ("192.168.1.20", "10.1.2.3", "100.64.0.1", "203.0.113.5", "2001:db8::5"):
        check_candidate(cand(ok), allow_loopback=False)
    with pytest.raises(ValueError, match="multicast"):
        check_candidate(cand("224.0.0.1"), allow_loopback=True)


def test_check_candidates_dedupes_sorts_and_bounds() -> None:
    kept = check_candidates(
        [
            cand("203.0.113.5", kind="srflx", priority=10),
            cand("192.168.1.2", priority=50),
            cand("203.0.113.5", kind="srflx", priority=30),
            cand("203.0.113.5", kind="relay", priority=1),
        ],
        allow_loopback=False,
    )
    assert [(c.kind.value, c.priority) for c in kept] == [("host", 50), ("srflx", 30), ("relay", 1)]
    many = [cand("198.51.100.1", port=1000 + i) for i in range(MAX_CANDIDATES + 1)]
    with pytest.raises(ValueError, match="at most"):
        check_candidates(many, allow_loopback=False)
    assert len(check_candidates(many[:MAX_CANDIDATES], allow_loopback=False)) == MAX_CANDIDATES


def test_peer_info_carries_candidates_and_pairing_and_a_1_0_reader_gets_endpoints() -> None:
    msg = PeerInfoMessage(
        character_id=7,
        character_name="Ayla",
        ticket="st1.a.b.c",
        endpoints=["198.51.100.1:4000"],
        candidates=[cand("198.51.100.1", priority=9)],
        pairing="whisper",
        pairing_id="abcdefgh12",
    )
    back = deserialize(serialize(msg))
    assert isinstance(back, PeerInfoMessage)
    assert back.candidates == msg.candidates and back.pairing == "whisper"
    # what a 1.1 lobby sends is read by a newer-minor-aware 1.0 reader as its known fields:
    # the new ones are optional, endpoints still name the addresses
    wire = json.loads(serialize(msg))
    assert wire["version"] == "1.1" and wire["endpoints"] == ["198.51.100.1:4000"]
    with pytest.raises(ValueError):
        PeerInfoMessage.model_validate({**wire, "pairing_id": "bad id!"})
