"""mesh.gate: admit / retry / drop for new Initials, pure, with an explicit ``now``."""

from __future__ import annotations

import dataclasses
import ssl
import weakref

import pytest
from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicHeader, QuicPacketType, pull_quic_header

from bench.handshake_flood import garbage_initial
from mesh.certs import ALPN
from mesh.config import MeshConfig
from mesh.gate import (
    Admit,
    Drop,
    InitialGate,
    Refusal,
    Retry,
    RetryTokens,
    source_key,
)
from protocol.errors import ErrorCode, MeshError

VERSIONS = QuicConfiguration(is_client=False).supported_versions
HONEST = ("192.0.2.10", 40000)
SERVER = ("192.0.2.1", 9000)  # where the test clients dial


def parse(data: bytes, cid_length: int = 8) -> QuicHeader:
    header: QuicHeader = pull_quic_header(Buffer(data=data), host_cid_length=cid_length)
    return header


def new_client() -> QuicConnection:
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE)
    return QuicConnection(configuration=config)


def first_initial(client: QuicConnection, now: float = 0.0) -> bytes:
    client.connect(SERVER, now=now)
    (data, _), *_ = client.datagrams_to_send(now=now)
    return data


#: per gate, what a core would answer ``in_progress`` from: the admitted ids still handshaking
LIVE: weakref.WeakKeyDictionary[InitialGate, set[bytes]] = weakref.WeakKeyDictionary()


def gate_for(**changes: object) -> InitialGate:
    live: set[bytes] = set()
    gate = InitialGate(
        dataclasses.replace(MeshConfig(), **changes),
        versions=VERSIONS,
        in_progress=live.__contains__,
    )
    LIVE[gate] = live
    return gate


def screen(
    gate: InitialGate, data: bytes, addr: tuple[str, int], now: float, handshakes: int = 0
) -> Admit | Retry | Drop:
    """``gate.screen``, and for an Admit what the core does: a connection is handshaking."""
    header = parse(data)
    verdict = gate.screen(header, len(data), addr, now, handshakes=handshakes)
    if isinstance(verdict, Admit):
        LIVE[gate].add(header.destination_cid)
    return verdict


def garbage_dcid(n: int, length: int = 8) -> bytes:
    return n.to_bytes(length, "big")


def garbage(n: int, *, dcid_len: int = 8, size: int = 1200, version: int = 1) -> bytes:
    return garbage_initial(garbage_dcid(n, dcid_len), b"S" * 8, size=size, version=version)


def test_what_cannot_be_a_peer_is_dropped_without_a_reply() -> None:
    gate = gate_for()
    cases = {
        Refusal.TOO_SMALL: garbage(1, size=1100),
        Refusal.UNSUPPORTED_VERSION: garbage(2, version=0x0A0A0A0A),
        Refusal.SHORT_CID: garbage(3, dcid_len=4),
    }
    for reason, data in cases.items():
        assert screen(gate, data, HONEST, 0.0) == Drop(reason)
    short_header = b"\x40" + bytes(8) + b"\x00" * 1300
    assert screen(gate, short_header, HONEST, 0.0) == Drop(Refusal.NOT_INITIAL)
    assert gate.datagrams_to_send() == []
    assert gate.stats["gate_admitted"] == 0 and gate.sources == 0


def test_below_the_threshold_an_initial_is_admitted_as_it_is() -> None:
    gate = gate_for(retry_threshold=4)
    data = first_initial(new_client())
    verdict = screen(gate, data, HONEST, 0.0, handshakes=3)
    assert verdict == Admit(parse(data).destination_cid) and not verdict.validated
    assert gate.datagrams_to_send() == []


def test_under_pressure_a_real_client_answers_the_retry_and_is_admitted() -> None:
    gate = gate_for(retry_threshold=4)
    client = new_client()
    data = first_initial(client, now=1.0)
    original_dcid = parse(data).destination_cid
    verdict = screen(gate, data, HONEST, 1.0, handshakes=4)
    assert isinstance(verdict, Retry)
    ((retry, dest),) = gate.datagrams_to_send()
    assert dest == HONEST and len(retry) < len(data) // 5  # no amplification
    header = parse(retry)
    assert header.packet_type == QuicPacketType.RETRY
    assert header.source_cid == verdict.source_cid and len(header.source_cid) == 8
    # aioquic's client follows it: a new Initial to our Retry's id, with the token
    client.receive_datagram(retry, SERVER, now=1.01)
    (again, _), *_ = client.datagrams_to_send(now=1.01)
    assert parse(again).token and parse(again).destination_cid == verdict.source_cid
    admitted = screen(gate, again, HONEST, 1.02, handshakes=60)
    assert admitted == Admit(original_dcid, verdict.source_cid) and admitted.validated
    assert gate.stats["gate_retries"] == 1 and gate.stats["gate_admitted_after_retry"] == 1


def test_threshold_zero_always_retries() -> None:
    gate = gate_for(retry_threshold=0)
    assert isinstance(screen(gate, first_initial(new_client()), HONEST, 0.0), Retry)


def test_every_slot_taken_drops_even_a_validated_initial() -> None:
    gate = gate_for(max_handshakes=8, retry_threshold=2)
    client = new_client()
    screen(gate, first_initial(client), HONEST, 0.0, handshakes=2)
    ((retry, _),) = gate.datagrams_to_send()
    client.receive_datagram(retry, SERVER, now=0.0)
    (again, _), *_ = client.datagrams_to_send(now=0.0)
    assert screen(gate, again, HONEST, 0.0, handshakes=8) == Drop(Refusal.FULL)
    assert isinstance(screen(gate, again, HONEST, 0.0, handshakes=7), Admit)


def _retried(gate: InitialGate, addr: tuple[str, int], now: float) -> tuple[bytes, bytes]:
    """(original Initial, the client's Initial answering our Retry); ``gate`` must want a
    Retry from ``addr`` (63 handshakes are said to be in progress)."""
    client = new_client()
    data = first_initial(client, now)
    assert isinstance(screen(gate, data, addr, now, handshakes=63), Retry)
    ((retry, _),) = gate.datagrams_to_send()
    client.receive_datagram(retry, SERVER, now=now)
    (again, _), *_ = client.datagrams_to_send(now=now)
    return data, again


def test_a_token_is_bound_to_address_port_connection_id_node_and_time() -> None:
    gate = gate_for(retry_token_lifetime=10.0)
    _, again = _retried(gate, HONEST, 100.0)
    header = parse(again)
    elsewhere = ("192.0.2.11", HONEST[1])
    other_port = (HONEST[0], HONEST[1] + 1)
    for addr in (elsewhere, other_port):
        assert gate.screen(header, len(again), addr, 101.0, handshakes=20) == Drop(
            Refusal.BAD_RETRY
        )
    assert screen(gate_for(), again, HONEST, 101.0) == Drop(Refusal.BAD_RETRY)  # other key
    assert screen(gate, again, HONEST, 110.5, handshakes=20) == Drop(Refusal.BAD_RETRY)  # old
    assert screen(gate, again, HONEST, 99.0, handshakes=20) == Drop(Refusal.BAD_RETRY)  # future
    moved = dataclasses.replace(header, destination_cid=bytes(8))
    assert gate.screen(moved, len(again), HONEST, 101.0, handshakes=20) == Drop(Refusal.BAD_RETRY)
    assert isinstance(screen(gate, again, HONEST, 109.5, handshakes=20), Admit)


def test_tampered_or_foreign_tokens_are_refused() -> None:
    tokens = RetryTokens(b"k" * 32, lifetime=10.0)
    token = tokens.mint(HONEST, b"O" * 8, b"R" * 8, 5.0)
    assert tokens.check(token, HONEST, b"R" * 8, 6.0) == b"O" * 8
    for bad in (
        token[:-1] + bytes((token[-1] ^ 1,)),
        token[:1] + bytes((token[1] ^ 0x40,)) + token[2:],  # issue time moved
        token[:10] + b"P" + token[11:],  # another original id
        token + b"x",
        token[:20],
        b"",
    ):
        assert tokens.check(bad, HONEST, b"R" * 8, 6.0) is None
    gate = gate_for()
    forged = garbage_initial(b"R" * 8, b"S" * 8, token=b"\x01" + bytes(40))
    assert screen(gate, forged, HONEST, 6.0) == Drop(Refusal.BAD_RETRY)
    short = garbage_initial(b"R" * 4, b"S" * 8, token=token)
    assert screen(gate, short, HONEST, 6.0) == Drop(Refusal.BAD_RETRY)
    with pytest.raises(MeshError):
        RetryTokens(b"short", lifetime=1.0)


def test_a_busy_source_is_retried_then_limited_only_by_validated_handshakes() -> None:
    gate = gate_for(max_handshakes_per_source=3, retry_threshold=64, max_handshakes=64)
    for n in range(3):
        assert isinstance(screen(gate, garbage(n + 1), HONEST, 0.0), Admit)
    # a fourth without a token: the source must prove its address first
    assert isinstance(screen(gate, garbage(9), HONEST, 0.1), Retry)
    gate.datagrams_to_send()
    # validated handshakes are counted apart: a forged flood in HONEST's name cannot lock it out
    for n in range(3):
        _, again = _retried(gate, HONEST, 0.2 + n)
        assert isinstance(screen(gate, again, HONEST, 0.2 + n, handshakes=20), Admit)
    _, again = _retried(gate, HONEST, 3.0)
    assert screen(gate, again, HONEST, 3.0, handshakes=20) == Drop(Refusal.SOURCE_LIMIT)
    # another port of the same address is the same source; another host is not
    assert isinstance(screen(gate, garbage(10), ("192.0.2.10", 1), 3.0), Retry)
    assert isinstance(screen(gate, garbage(11), ("192.0.2.99", 1), 3.0), Admit)
    # a handshake that ends (done or failed) frees its place at once
    LIVE[gate].discard(garbage_dcid(1))
    assert isinstance(screen(gate, garbage(12), HONEST, 3.1), Admit)
    assert isinstance(screen(gate, garbage(13), HONEST, 3.1), Retry)
    gate.datagrams_to_send()
    LIVE[gate].clear()  # and validated ones too: the refused Initial is welcome now
    assert isinstance(screen(gate, again, HONEST, 3.2, handshakes=20), Admit)


def test_many_honest_peers_behind_one_address_connect_one_after_the_other() -> None:
    gate = gate_for(max_handshakes_per_source=2, retry_threshold=0)
    for n in range(20):
        _, again = _retried(gate, HONEST, float(n))
        assert isinstance(screen(gate, again, HONEST, float(n), handshakes=1), Admit)
        LIVE[gate].clear()  # its handshake completed
    assert gate.stats["gate_refused_source_limit"] == 0


def test_the_source_table_is_bounded() -> None:
    gate = gate_for(gate_sources=4, retry_threshold=64)
    for n in range(10):
        assert isinstance(screen(gate, garbage(n + 1), (f"198.51.100.{n}", 1), 0.0), Admit)
    assert gate.sources == 4


def test_sources_are_ipv4_addresses_and_ipv6_networks() -> None:
    assert source_key(("192.0.2.1", 5)) == "192.0.2.1"
    assert source_key(("::ffff:192.0.2.1", 5, 0, 0)) == "192.0.2.1"
    a = source_key(("2001:db8:1:2::1", 5, 0, 0))
    assert a == source_key(("2001:db8:1:2:ffff::9", 6, 0, 0)) == "2001:db8:1:2::/64"
    assert source_key(("fe80::1%eth0", 5, 0, 2)) == "fe80::/64"
    assert source_key(("not-an-ip", 1)) == "not-an-ip"


def test_the_retry_queue_is_bounded_and_emptied_by_the_driver() -> None:
    gate = gate_for(retry_threshold=0)
    for n in range(300):
        assert isinstance(screen(gate, garbage(n + 1), (f"203.0.113.{n % 250}", n), 0.0), Retry)
    assert len(gate.datagrams_to_send()) == 256
    assert gate.stats["gate_retries_unsent"] == 44
    assert gate.datagrams_to_send() == []


@pytest.mark.parametrize(
    "changes",
    [
        {"retry_threshold": 65},
        {"retry_threshold": -1},
        {"max_handshakes_per_source": 0},
        {"retry_token_lifetime": 0.0},
        {"gate_sources": 0},
        {"connection_id_length": 21},
    ],
)
def test_unusable_settings_are_a_mesh_error(changes: dict[str, object]) -> None:
    with pytest.raises(MeshError) as info:
        gate_for(**changes)
    assert info.value.code == ErrorCode.BAD_REQUEST
