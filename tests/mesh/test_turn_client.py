"""The sans-I/O TURN client (mesh/turn_client.py) against a scripted TURN server."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.stun_transactions import Retransmission
from mesh.turn_client import (
    PERMISSION_REFRESH,
    Allocated,
    AllocationFailed,
    ChannelBound,
    DataReceived,
    PermissionFailed,
    PermissionInstalled,
    Released,
    TurnClient,
    TurnEvent,
    TurnState,
)
from protocol.errors import MeshError
from protocol.stun import (
    Attr,
    Attribute,
    Method,
    StunClass,
    StunMessage,
    encode_message,
    error_code_value,
    long_term_key,
    new_transaction_id,
    parse_message,
    text_value,
    u32_value,
    xor_address_value,
)
from protocol.turn import (
    data_indication,
    encode_channel_data,
    parse_channel_data,
    turn_rest_credentials,
    turn_rest_password,
)

__all__: list[str] = []

SERVER = ("100.64.0.10", 3478)
RELAYED = ("100.64.0.10", 50000)
MAPPED = ("100.64.0.2", 41000)
PEER = ("100.64.0.10", 50001)
SECRET = "s3cret"
NOW = 1_000.0


@dataclass
class ScriptedServer:
    """Answers like coturn with use-auth-secret; the test can override one answer."""

    realm: str = "shards"
    nonce: str = "nonce-1"
    lifetime: int = 600
    requests: list[StunMessage] = field(default_factory=list)
    stale_next: bool = False  # answer the next signed request with 438

    def key(self, username: str) -> bytes:
        return long_term_key(username, self.realm, turn_rest_password(SECRET, username))

    def answer(self, data: bytes) -> bytes | None:
        message = parse_message(data)
        self.requests.append(message)
        txid = message.transaction_id
        if message.cls is StunClass.INDICATION:
            return None
        username = message.username()
        if username is None:
            return self._error(message, 401)
        try:
            message.check_integrity(self.key(username))
        except Exception:
            return self._error(message, 401)
        if self.stale_next or message.nonce() != self.nonce:
            self.stale_next = False
            self.nonce += "x"
            return self._error(message, 438)
        attrs: list[Attribute] = []
        if message.method == Method.ALLOCATE:
            attrs = [
                (Attr.XOR_RELAYED_ADDRESS, xor_address_value(RELAYED, txid)),
                (Attr.XOR_MAPPED_ADDRESS, xor_address_value(MAPPED, txid)),
                (Attr.LIFETIME, u32_value(self.lifetime)),
            ]
        elif message.method == Method.REFRESH:
            attrs = [(Attr.LIFETIME, u32_value(message.lifetime() or 0))]
        return encode_message(
            message.method, StunClass.SUCCESS, txid, attrs, integrity_key=self.key(username)
        )

    def _error(self, message: StunMessage, code: int) -> bytes:
        attrs: list[Attribute] = [(Attr.ERROR_CODE, error_code_value(code, "no"))]
        attrs += [(Attr.REALM, text_value(self.realm)), (Attr.NONCE, text_value(self.nonce))]
        return encode_message(message.method, StunClass.ERROR, message.transaction_id, attrs)


def _client(**kwargs: object) -> TurnClient:
    creds = turn_rest_credentials(SECRET, "peer-a", now=NOW, ttl=600)
    return TurnClient(SERVER, creds.username, creds.password, **kwargs)  # type: ignore[arg-type]


def _exchange(client: TurnClient, server: ScriptedServer, now: float) -> list[TurnEvent]:
    """Deliver everything the client sends, and every answer, until both are quiet."""
    while True:
        out = client.datagrams_to_send(now)
        if not out:
            break
        for data, destination in out:
            assert destination == SERVER
            answer = server.answer(data) if data[0] < 4 else None
            if answer is not None:
                assert client.receive_datagram(answer, SERVER, now)
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    return events


def _allocated(server: ScriptedServer | None = None) -> tuple[TurnClient, ScriptedServer]:
    server = server or ScriptedServer()
    client = _client()
    client.allocate(NOW)
    assert _exchange(client, server, NOW) == [Allocated(RELAYED, MAPPED, 600)]
    return client, server


def test_allocation_with_the_401_challenge() -> None:
    client, server = _allocated()
    assert client.state is TurnState.ALLOCATED
    assert (client.relayed, client.mapped) == (RELAYED, MAPPED)
    probe, signed = server.requests
    assert not probe.has_integrity() and probe.requested_transport() == 17
    assert signed.realm() == "shards" and signed.nonce() == "nonce-1"
    assert signed.lifetime() == 600
    # the allocation is refreshed a minute before its lifetime ends
    assert client.get_timer() == pytest.approx(NOW + 540)


def test_wrong_password_fails_the_allocation() -> None:
    client = TurnClient(SERVER, "1600:peer-a", "not the password")
    client.allocate(NOW)
    events = _exchange(client, ScriptedServer(), NOW)
    assert len(events) == 1 and isinstance(events[0], AllocationFailed)
    assert events[0].error_code == 401
    assert client.state is TurnState.FAILED and client.get_timer() is None
    with pytest.raises(MeshError):
        client.permit(PEER, NOW)


def test_unsigned_or_forged_success_is_ignored() -> None:
    server = ScriptedServer()
    client = _client()
    client.allocate(NOW)
    [(probe, _)] = client.datagrams_to_send(NOW)
    answer = server.answer(probe)
    assert answer is not None
    assert client.receive_datagram(answer, SERVER, NOW)
    [(signed, _)] = client.datagrams_to_send(NOW)
    txid = parse_message(signed).transaction_id
    attrs = [
        (Attr.XOR_RELAYED_ADDRESS, xor_address_value(("6.6.6.6", 1), txid)),
        (Attr.LIFETIME, u32_value(600)),
    ]
    key = server.key(turn_rest_credentials(SECRET, "peer-a", now=NOW, ttl=600).username)
    forged = [
        encode_message(Method.ALLOCATE, StunClass.SUCCESS, txid, attrs),
        encode_message(Method.ALLOCATE, StunClass.SUCCESS, txid, attrs, integrity_key=b"guess"),
        encode_message(Method.REFRESH, StunClass.SUCCESS, txid, attrs, integrity_key=key),
    ]
    for fake in forged:
        assert client.receive_datagram(fake, SERVER, NOW)
        assert client.receive_datagram(fake, ("6.6.6.6", 3478), NOW) is False
    assert client.next_event() is None and client.state is TurnState.ALLOCATING
    real = server.answer(signed)
    assert real is not None and client.receive_datagram(real, SERVER, NOW)
    assert client.next_event() == Allocated(RELAYED, MAPPED, 600)


def test_refresh_with_a_stale_nonce() -> None:
    client, server = _allocated()
    due = client.get_timer()
    assert due is not None
    client.handle_timer(due)
    server.stale_next = True
    assert _exchange(client, server, due) == []
    refreshes = [m for m in server.requests if m.method == Method.REFRESH]
    assert [m.nonce() for m in refreshes] == ["nonce-1", "nonce-1x"]
    assert client.state is TurnState.ALLOCATED
    assert client.get_timer() == pytest.approx(due + 540)


def test_lost_refresh_fails_the_allocation() -> None:
    client, _ = _allocated()
    due = client.get_timer()
    assert due is not None
    client.handle_timer(due)
    client.datagrams_to_send(due)
    events = []
    while (at := client.get_timer()) is not None:
        client.handle_timer(at)
        client.datagrams_to_send(at)
        events += [e for e in iter(client.next_event, None)]
    assert len(events) == 1 and isinstance(events[0], AllocationFailed)
    assert "refresh" in events[0].reason and client.state is TurnState.FAILED


def test_permission_send_indication_and_refresh() -> None:
    client, server = _allocated()
    with pytest.raises(MeshError, match="permission"):
        client.send(PEER, b"too early")
    client.permit(PEER, NOW)
    client.permit(("100.64.0.10", 9), NOW)  # same IP: one permission
    assert _exchange(client, server, NOW) == [PermissionInstalled(PEER[0])]
    client.send(PEER, b"hello")
    [(indication, _)] = client.datagrams_to_send(NOW)
    sent = parse_message(indication)
    assert (sent.method, sent.cls) == (Method.SEND, StunClass.INDICATION)
    assert (sent.xor_peer_address(), sent.data()) == (PEER, b"hello")
    # refreshed every PERMISSION_REFRESH seconds, silently
    assert client.get_timer() == pytest.approx(NOW + PERMISSION_REFRESH)
    client.handle_timer(NOW + PERMISSION_REFRESH)
    assert _exchange(client, server, NOW + PERMISSION_REFRESH) == []
    permissions = [m for m in server.requests if m.method == Method.CREATE_PERMISSION]
    assert len(permissions) == 2


def test_channel_binding_switches_to_channel_data() -> None:
    client, server = _allocated()
    channel = client.bind_channel(PEER, NOW)
    assert client.bind_channel(PEER, NOW) == channel == 0x4000
    client.send(PEER, b"before")  # not bound yet: a Send indication
    out = client.datagrams_to_send(NOW)
    kinds = sorted(parse_message(data).method for data, _ in out)
    assert kinds == [Method.SEND, Method.CHANNEL_BIND]
    for data, _ in out:
        if parse_message(data).method == Method.CHANNEL_BIND:
            answer = server.answer(data)
            assert answer is not None and client.receive_datagram(answer, SERVER, NOW)
    assert client.next_event() == ChannelBound(PEER, 0x4000)
    client.send(PEER, b"after")
    [(frame, _)] = client.datagrams_to_send(NOW)
    decoded = parse_channel_data(frame)
    assert (decoded.channel, decoded.data) == (0x4000, b"after")
    assert client.bind_channel(("100.64.0.10", 50002), NOW) == 0x4001


def test_a_request_that_cannot_start_leaves_nothing_behind() -> None:
    """A ChannelBind or CreatePermission refused for want of a transaction slot keeps no
    channel or permission: once a slot is free, the same call sends its request (a kept
    entry would never be bound or installed, and the peer stay on Send indications)."""
    server = ScriptedServer()
    client = _client(max_pending=1)
    client.allocate(NOW)
    assert _exchange(client, server, NOW) == [Allocated(RELAYED, MAPPED, 600)]
    other = ("100.64.0.20", 7000)
    client.permit(other, NOW)  # the one slot
    with pytest.raises(MeshError):
        client.bind_channel(PEER, NOW)
    with pytest.raises(MeshError):
        client.permit(("100.64.0.30", 7000), NOW)
    assert _exchange(client, server, NOW) == [PermissionInstalled(other[0])]

    assert client.bind_channel(PEER, NOW) == 0x4000  # no number lost to the refused one
    assert _exchange(client, server, NOW) == [ChannelBound(PEER, 0x4000)]
    client.send(PEER, b"bound")
    [(frame, _)] = client.datagrams_to_send(NOW)
    assert parse_channel_data(frame).data == b"bound"
    client.permit(("100.64.0.30", 7000), NOW)
    assert _exchange(client, server, NOW) == [PermissionInstalled("100.64.0.30")]


def test_a_refresh_due_while_every_slot_is_taken_waits_for_one() -> None:
    """The allocation's refresh falls due while requests fill every transaction slot (a
    silent server, many new peers): the timer must not raise (it runs in the node's timer
    callback); the refresh goes out once a slot is free, before the allocation expires."""
    server = ScriptedServer()
    client = _client(max_pending=1, retransmission=Retransmission(rto=100.0))
    client.allocate(NOW)
    assert _exchange(client, server, NOW) == [Allocated(RELAYED, MAPPED, 600)]
    client.permit(PEER, NOW)
    [(unanswered, _)] = client.datagrams_to_send(NOW)  # the one slot, lost
    due = client.get_timer()
    assert due is not None and due < NOW + 600
    later = NOW + 540.0  # past the allocation's refresh time (600 s lifetime)
    client.handle_timer(later)
    assert client.state is TurnState.ALLOCATED
    sent = [parse_message(d).method for d, _ in client.datagrams_to_send(later)]
    assert Method.REFRESH not in sent
    answer = server.answer(unanswered)  # the permission's answer frees the slot
    assert answer is not None and client.receive_datagram(answer, SERVER, later)
    retry = client.get_timer()
    assert retry is not None and retry <= later + 100.0
    client.handle_timer(retry)
    sent = [parse_message(d).method for d, _ in client.datagrams_to_send(retry)]
    assert sent == [Method.REFRESH]


def test_data_from_peers_in_both_framings() -> None:
    client, server = _allocated()
    client.bind_channel(PEER, NOW)
    _exchange(client, server, NOW)
    assert client.receive_datagram(data_indication(new_transaction_id(), PEER, b"a"), SERVER, NOW)
    assert client.receive_datagram(encode_channel_data(0x4000, b"b"), SERVER, NOW)
    assert client.receive_datagram(encode_channel_data(0x4ABC, b"unbound"), SERVER, NOW)
    assert client.receive_datagram(b"\x40\x00\x00\x09short", SERVER, NOW)  # dropped
    assert not client.receive_datagram(encode_channel_data(0x4000, b"x"), PEER, NOW)
    events = list(iter(client.next_event, None))
    assert events == [DataReceived(PEER, b"a"), DataReceived(PEER, b"b")]


def test_refused_permission_is_reported() -> None:
    client, _ = _allocated()
    client.permit(PEER, NOW)
    [(request, _)] = client.datagrams_to_send(NOW)
    txid = parse_message(request).transaction_id
    refusal = encode_message(
        Method.CREATE_PERMISSION,
        StunClass.ERROR,
        txid,
        [(Attr.ERROR_CODE, error_code_value(403, "Forbidden"))],
    )
    assert client.receive_datagram(refusal, SERVER, NOW)
    assert client.next_event() == PermissionFailed(PEER[0], "403 Forbidden", 403)
    with pytest.raises(MeshError):
        client.send(PEER, b"x")
    assert client.state is TurnState.ALLOCATED


def test_release_and_close() -> None:
    client, server = _allocated()
    client.release(NOW)
    assert _exchange(client, server, NOW) == [Released()]
    assert client.state is TurnState.CLOSED
    assert server.requests[-1].lifetime() == 0
    with pytest.raises(MeshError):
        client.allocate(NOW)
    other, _ = _allocated()
    other.close()
    assert other.state is TurnState.CLOSED and other.datagrams_to_send(NOW) == []


def test_silent_server_times_out() -> None:
    client = _client(retransmission=Retransmission(0.1, 3, 2))
    client.allocate(NOW)
    sends = len(client.datagrams_to_send(NOW))
    while (at := client.get_timer()) is not None:
        client.handle_timer(at)
        sends += len(client.datagrams_to_send(at))
    assert sends == 3
    event = client.next_event()
    assert isinstance(event, AllocationFailed) and "3 sends" in event.reason


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=100))
def test_random_datagrams_from_the_server_never_raise(data: bytes) -> None:
    client, _ = _allocated()
    client.bind_channel(PEER, NOW)
    assert client.receive_datagram(data, SERVER, NOW)
    assert client.state is TurnState.ALLOCATED
