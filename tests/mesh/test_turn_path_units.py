"""The node's TURN path (mesh/turn_path.py) against the scripted TURN server, in virtual time:
routes, channel binding, permissions, idle release, fresh credentials."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.paths import TurnRoute
from mesh.turn_client import DataReceived, PermissionInstalled, TurnState
from mesh.turn_path import TurnPath
from protocol.stun import Method, StunClass, parse_message
from protocol.turn import CHANNEL_MIN, data_indication, encode_channel_data, turn_rest_credentials

from .test_turn_client import NOW, PEER, RELAYED, SECRET, SERVER, ScriptedServer, _client

__all__: list[str] = []


def _flush(path: TurnPath, server: ScriptedServer, now: float) -> list[bytes]:
    """Deliver requests to the server and its answers back; return the indications and
    ChannelData the path sent (what would reach peers)."""
    relayed: list[bytes] = []
    while out := path.datagrams_to_send(now):
        for data, destination in out:
            assert destination == SERVER
            if data[0] >= 0x40:
                relayed.append(data)
                continue
            answer = server.answer(data)
            if answer is None:
                relayed.append(data)
            else:
                assert path.receive_datagram(answer, SERVER, now)
    return relayed


def _allocated(idle_release: float = 60.0) -> tuple[TurnPath, ScriptedServer]:
    server = ScriptedServer()
    path = TurnPath(_client(), idle_release=idle_release)
    path.permit(["198.51.100.7"], NOW)  # before the allocation: installed once it is up
    path.allocate(NOW)
    _flush(path, server, NOW)
    assert path.state is TurnState.ALLOCATED and path.relayed_address == RELAYED
    assert any(
        m.method == Method.CREATE_PERMISSION and m.cls is StunClass.REQUEST for m in server.requests
    )
    return path, server


def test_first_datagram_binds_a_channel_then_channel_data() -> None:
    path, server = _allocated()
    route = TurnRoute(PEER)
    path.send(route, b"quic-1", NOW)
    first = _flush(path, server, NOW)
    assert [parse_message(d).method for d in first] == [Method.SEND]  # before the bind
    assert server.requests[-2].method == Method.CHANNEL_BIND
    path.send(route, b"quic-2", NOW)
    (second,) = _flush(path, server, NOW)
    assert second[0] >> 6 == 1 and second.endswith(b"quic-2")  # ChannelData


def test_what_peers_send_comes_out_with_its_route() -> None:
    path, server = _allocated()
    path.send(TurnRoute(PEER), b"hello", NOW)
    _flush(path, server, NOW)
    assert path.receive_datagram(data_indication(b"t" * 12, PEER, b"a"), SERVER, NOW)
    assert path.receive_datagram(encode_channel_data(CHANNEL_MIN, b"b"), SERVER, NOW)  # 1st channel
    assert path.relayed() == [(b"a", TurnRoute(PEER)), (b"b", TurnRoute(PEER))]
    assert path.relayed() == []
    assert not path.receive_datagram(b"from a peer directly", PEER, NOW)


def test_an_idle_allocation_is_released_a_used_one_kept() -> None:
    path, server = _allocated(idle_release=30.0)
    path.send(TurnRoute(PEER), b"x", NOW + 20)
    _flush(path, server, NOW + 20)
    due = path.get_timer()
    assert due is not None and due <= NOW + 50
    path.handle_timer(NOW + 40)  # used 20 s ago: kept
    _flush(path, server, NOW + 40)
    assert path.state is TurnState.ALLOCATED
    path.handle_timer(NOW + 50)
    _flush(path, server, NOW + 50)
    state: TurnState = path.state
    assert server.requests[-1].method == Method.REFRESH and server.requests[-1].lifetime() == 0
    assert state is TurnState.CLOSED


def test_relaying_leaves_the_timer_still_and_idle_release_on_time() -> None:
    """The node re-arms its loop timer whenever get_timer() changes, and asks on every
    flush: relaying a datagram must not move it. The release still comes idle_release
    after the last datagram, not after the first deadline."""
    path, server = _allocated(idle_release=30.0)
    route = TurnRoute(PEER)
    path.send(route, b"bind", NOW)
    _flush(path, server, NOW)  # the channel is bound: what follows is plain ChannelData
    due = path.get_timer()
    assert due == NOW + 30
    for i in range(1, 20):
        path.send(route, b"quic", NOW + i)
        assert path.receive_datagram(encode_channel_data(CHANNEL_MIN, b"quic"), SERVER, NOW + i)
        _flush(path, server, NOW + i)
        assert path.get_timer() == due
    path.handle_timer(due)  # used 11 s ago: kept, looked at again when it would be idle
    _flush(path, server, due)
    assert path.state is TurnState.ALLOCATED
    assert path.get_timer() == NOW + 19 + 30
    path.handle_timer(NOW + 19 + 30)
    _flush(path, server, NOW + 19 + 30)
    assert path.state is TurnState.CLOSED


def test_the_clients_timer_follows_new_requests() -> None:
    """get_timer() is remembered between calls: a new request (a permission, a channel)
    must still bring it forward to its retransmission."""
    path, server = _allocated(idle_release=10_000.0)
    quiet = path.client.get_timer()
    assert quiet is not None and quiet > NOW + 100  # only refreshes ahead
    path.permit(["203.0.113.9"], NOW + 1)
    retransmit = path.client.get_timer()
    assert retransmit is not None and retransmit < NOW + 10
    _flush(path, server, NOW + 1)  # answered: back to the refreshes
    answered = path.client.get_timer()
    assert answered is not None and answered > NOW + 100


def test_fresh_credentials_sign_the_next_refresh() -> None:
    path, server = _allocated(idle_release=10_000.0)
    fresh = turn_rest_credentials(SECRET, "peer-a", now=NOW + 500, ttl=600)
    path.update_credentials(fresh.username, fresh.password)
    signed: list[str | None] = []
    while not any(m.method == Method.REFRESH for m in server.requests):
        due = path.get_timer()
        assert due is not None and due < NOW + 600
        before = len(server.requests)
        path.handle_timer(due)
        _flush(path, server, due)
        signed += [m.username() for m in server.requests[before:]]
    assert signed and set(signed) == {fresh.username}  # permission and allocation refreshes
    assert path.state is TurnState.ALLOCATED


def test_a_datagram_the_client_cannot_take_is_dropped_not_raised() -> None:
    """More new peers at once than TURN transactions may be in flight: the node's flush
    must not raise (a datagram is dropped, as UDP may; QUIC sends it again)."""
    path, server = _allocated()
    for port in range(1, 200):
        path.send(TurnRoute(("198.51.100.7", port)), b"quic", NOW)
    assert path.state is TurnState.ALLOCATED
    _flush(path, server, NOW)  # what could be sent was; every answer is in
    # a peer whose ChannelBind could not start then is bound by its next datagram
    late = TurnRoute(("198.51.100.7", 199))
    path.send(late, b"again", NOW)
    _flush(path, server, NOW)
    path.send(late, b"bound", NOW)
    (frame,) = _flush(path, server, NOW)
    assert frame[0] >> 6 == 1 and frame.endswith(b"bound")  # ChannelData


def test_more_peers_to_permit_than_requests_in_flight_are_all_permitted() -> None:
    """A crowded area: more peer addresses permitted before the allocation is up than
    TURN requests may be in flight. Receiving the Allocate answer must not raise into the
    node's socket callback; each address is asked for as answers free a slot."""
    server = ScriptedServer()
    path = TurnPath(_client(), idle_release=60.0)
    hosts = [f"198.51.100.{i}" for i in range(1, 101)]  # 100 > the client's 64 slots
    path.permit(hosts, NOW)
    path.allocate(NOW)
    _flush(path, server, NOW)
    installed = {e.host for e in iter(path.next_event, None) if isinstance(e, PermissionInstalled)}
    assert installed == set(hosts)
    path.permit([f"203.0.113.{i}" for i in range(1, 101)], NOW)  # and once allocated
    _flush(path, server, NOW)
    installed = {e.host for e in iter(path.next_event, None) if isinstance(e, PermissionInstalled)}
    assert len(installed) == 100


def _bound() -> TurnPath:
    """An allocated path whose first channel (CHANNEL_MIN) is bound to PEER."""
    path, server = _allocated()
    path.send(TurnRoute(PEER), b"bind", NOW)
    _flush(path, server, NOW)
    while path.next_event() is not None:  # allocated, permitted, bound: not under test
        pass
    return path


def test_channel_data_comes_out_as_the_clients_would_report_it() -> None:
    """The path reads ChannelData itself (no client event): padded frames count, frames on
    a channel not ours, with bytes past their padding or after the release do not."""
    path = _bound()
    assert path.receive_datagram(encode_channel_data(CHANNEL_MIN, b"abcde", pad=True), SERVER, NOW)
    assert path.receive_datagram(encode_channel_data(CHANNEL_MIN + 1, b"x"), SERVER, NOW)
    assert path.receive_datagram(encode_channel_data(CHANNEL_MIN, b"ab") + b"\0" * 4, SERVER, NOW)
    assert path.receive_datagram(b"\x40\x00", SERVER, NOW)  # shorter than the header
    assert path.relayed() == [(b"abcde", TurnRoute(PEER))]
    assert path.bytes_received == 5 and path.next_event() is None
    assert not path.receive_datagram(encode_channel_data(CHANNEL_MIN, b"q"), PEER, NOW)
    path.release(NOW)
    assert path.receive_datagram(encode_channel_data(CHANNEL_MIN, b"late"), SERVER, NOW)
    assert path.relayed() == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 79).flatmap(lambda first: st.binary(max_size=60).map(bytes([first]).__add__)))
def test_any_datagram_from_the_server_reads_as_through_the_client(data: bytes) -> None:
    """Whatever the server sends, the path relays what its client, handed the same datagram,
    reports as ``DataReceived``."""
    path = _bound()
    assert path.receive_datagram(data, SERVER, NOW)
    by_path = path.relayed()
    assert path.client.receive_datagram(data, SERVER, NOW)
    events = iter(path.client.next_event, None)
    by_client = [(e.data, TurnRoute(e.peer)) for e in events if isinstance(e, DataReceived)]
    assert by_path == by_client
