"""The sans-I/O STUN Binding client (mesh/stun_client.py): matching, backoff, outcomes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.stun_client import (
    BindingFailed,
    BindingSucceeded,
    MappingBehaviour,
    Retransmission,
    StunClient,
)
from protocol.errors import MeshError
from protocol.stun import (
    Attr,
    Method,
    StunClass,
    binding_error,
    binding_success,
    encode_message,
    parse_message,
)

__all__: list[str] = []

SERVER = ("192.0.2.10", 3478)
OTHER = ("198.51.100.20", 3478)
ME = ("203.0.113.5", 40123)


def _sent_request(client: StunClient, now: float) -> bytes:
    [(datagram, destination)] = client.datagrams_to_send(now)
    assert destination == SERVER
    request = parse_message(datagram)
    assert (request.method, request.cls) == (Method.BINDING, StunClass.REQUEST)
    return request.transaction_id


def test_success_reports_the_reflexive_address_and_rtt() -> None:
    client = StunClient(software="shards-peer")
    txid = client.request(SERVER, now=100.0)
    assert _sent_request(client, 100.0) == txid
    assert client.get_timer() == pytest.approx(100.5)
    assert client.receive_datagram(binding_success(txid, ME), SERVER, now=100.04)
    event = client.next_event()
    assert isinstance(event, BindingSucceeded)
    assert (event.server, event.transaction_id, event.mapped) == (SERVER, txid, ME)
    assert event.rtt == pytest.approx(0.04)
    assert client.next_event() is None
    assert client.get_timer() is None and client.pending == 0
    assert client.mapped_address() == ME == client.mapped_address(SERVER)
    # a duplicate answer is no longer ours
    assert not client.receive_datagram(binding_success(txid, ME), SERVER, now=100.05)


def test_idle_attribute_follows_every_change_of_state() -> None:
    """``idle`` is an attribute the methods keep current (the node reads it on every
    flush): each step that queues, answers or reads must update it, or a Binding started
    from a handler would never be flushed, or an idle client be driven forever."""
    client = StunClient(Retransmission(rto=1.0, max_transmissions=2, final_wait=1.0))
    assert client.idle
    txid = client.request(SERVER, now=0.0)
    assert not client.idle  # queued
    _sent_request(client, 0.0)
    assert not client.idle  # in flight
    assert client.receive_datagram(binding_success(txid, ME), SERVER, now=0.1)
    assert not client.idle  # answered, its event unread
    assert isinstance(client.next_event(), BindingSucceeded)
    assert client.idle
    # two outcomes: idle only once both are read
    client.request(SERVER, now=1.0)
    client.request(OTHER, now=1.0)
    client.datagrams_to_send(1.0)
    client.handle_timer(2.0)  # resent
    assert not client.idle
    assert len(client.datagrams_to_send(2.0)) == 2
    client.handle_timer(10.0)  # both failed
    assert client.next_event() is not None
    assert not client.idle
    assert client.next_event() is not None
    assert client.idle


def test_rfc8489_backoff_schedule_then_timeout() -> None:
    client = StunClient()  # RFC defaults: RTO 500 ms, Rc = 7, Rm = 16
    client.request(SERVER, now=0.0)
    sends = [0.0] if client.datagrams_to_send(0.0) else []
    failed_at = None
    while (due := client.get_timer()) is not None:
        client.handle_timer(due)
        if client.datagrams_to_send(due):
            sends.append(due)
        if (event := client.next_event()) is not None:
            assert isinstance(event, BindingFailed) and "7 sends" in event.reason
            failed_at = due
    assert sends == pytest.approx([0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
    assert failed_at == pytest.approx(39.5)


def test_early_timer_call_changes_nothing_and_retransmitted_answer_has_no_rtt() -> None:
    client = StunClient(Retransmission(0.1, 3, 2))
    txid = client.request(SERVER, now=0.0)
    client.datagrams_to_send(0.0)
    client.handle_timer(0.05)
    assert client.datagrams_to_send(0.05) == []
    client.handle_timer(0.1)
    [(again, _)] = client.datagrams_to_send(0.1)
    assert parse_message(again).transaction_id == txid
    assert client.receive_datagram(binding_success(txid, ME), SERVER, now=0.15)
    event = client.next_event()
    assert isinstance(event, BindingSucceeded) and event.rtt is None


def test_foreign_datagrams_are_not_consumed() -> None:
    client = StunClient()
    txid = client.request(SERVER, now=0.0)
    client.datagrams_to_send(0.0)
    answer = binding_success(txid, ME)
    assert not client.receive_datagram(answer, OTHER, now=0.1)  # wrong source
    assert not client.receive_datagram(binding_success(b"x" * 12, ME), SERVER, now=0.1)
    request_with_our_id = encode_message(Method.BINDING, StunClass.REQUEST, txid)
    assert not client.receive_datagram(request_with_our_id, SERVER, now=0.1)
    assert not client.receive_datagram(answer[:-4], SERVER, now=0.1)  # malformed
    assert not client.receive_datagram(b"\x40\x01\x02", SERVER, now=0.1)
    other_method = encode_message(Method.ALLOCATE, StunClass.SUCCESS, txid)
    assert not client.receive_datagram(other_method, SERVER, now=0.1)
    assert client.pending == 1 and client.next_event() is None
    # the real answer still completes it, also through a dual-stack socket's mapped form
    assert client.receive_datagram(answer, ("::ffff:192.0.2.10", 3478), now=0.2)
    assert isinstance(client.next_event(), BindingSucceeded)


def test_error_and_unusable_answers_fail_the_transaction() -> None:
    client = StunClient()
    first = client.request(SERVER, now=0.0)
    second = client.request(SERVER, now=0.0)
    third = client.request(SERVER, now=0.0)
    assert client.receive_datagram(binding_error(first, 420, "Unknown"), SERVER, 0.1)
    event = client.next_event()
    assert isinstance(event, BindingFailed) and event.error_code == 420
    empty = encode_message(Method.BINDING, StunClass.SUCCESS, second)
    assert client.receive_datagram(empty, SERVER, 0.1)
    event = client.next_event()
    assert isinstance(event, BindingFailed) and "mapped" in event.reason
    bad_value = encode_message(
        Method.BINDING, StunClass.SUCCESS, third, [(Attr.XOR_MAPPED_ADDRESS, b"\x00\x09\x00")]
    )
    assert client.receive_datagram(bad_value, SERVER, 0.1)
    event = client.next_event()
    assert isinstance(event, BindingFailed) and "malformed" in event.reason
    assert client.mapped_address() is None


def test_plain_mapped_address_is_accepted() -> None:
    client = StunClient()
    txid = client.request(SERVER, now=0.0)
    value = b"\x00\x01" + (4000).to_bytes(2, "big") + bytes([203, 0, 113, 9])
    answer = encode_message(Method.BINDING, StunClass.SUCCESS, txid, [(Attr.MAPPED_ADDRESS, value)])
    assert client.receive_datagram(answer, SERVER, 0.1)
    event = client.next_event()
    assert isinstance(event, BindingSucceeded) and event.mapped == ("203.0.113.9", 4000)


@pytest.mark.parametrize(
    ("second_mapping", "behaviour"),
    [
        (ME, MappingBehaviour.ENDPOINT_INDEPENDENT),
        (("203.0.113.5", 50000), MappingBehaviour.ENDPOINT_DEPENDENT),
    ],
)
def test_mapping_behaviour(second_mapping: tuple[str, int], behaviour: MappingBehaviour) -> None:
    client = StunClient()
    assert client.mapping_behaviour() is MappingBehaviour.UNKNOWN
    a = client.request(SERVER, now=0.0)
    b = client.request(OTHER, now=0.0)
    assert client.receive_datagram(binding_success(a, ME), SERVER, 0.1)
    assert client.mapping_behaviour() is MappingBehaviour.UNKNOWN
    assert client.receive_datagram(binding_success(b, second_mapping), OTHER, 0.1)
    assert client.mapping_behaviour() is behaviour
    assert client.mapped_address() == second_mapping


def test_bounds_and_settings() -> None:
    client = StunClient(max_pending=2)
    client.request(SERVER, 0.0)
    client.request(SERVER, 0.0)
    with pytest.raises(MeshError):
        client.request(SERVER, 0.0)
    for bad in ({"rto": 0}, {"max_transmissions": 0}, {"final_wait": -1}):
        with pytest.raises(MeshError):
            Retransmission(**bad)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120))
def test_random_datagrams_are_never_consumed(data: bytes) -> None:
    client = StunClient(new_id=lambda: b"\x01" * 12)
    client.request(SERVER, 0.0)
    assert not client.receive_datagram(data, SERVER, 0.1)
    assert client.pending == 1
