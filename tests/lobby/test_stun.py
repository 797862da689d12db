"""The lobby's STUN responder (lobby/stun.py), over real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lobby import MasterServer
from lobby.__main__ import parse_args, settings_from
from lobby.stun import StunResponder, StunServer
from protocol.stun import (
    Attr,
    Method,
    StunClass,
    binding_request,
    encode_message,
    new_transaction_id,
    parse_message,
)
from protocol.turn import allocate_request
from tests.lobby.support import FakeClock, fast_settings

__all__: list[str] = []


class UdpClient(asyncio.DatagramProtocol):
    """A UDP socket whose received datagrams land in a queue."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait(data)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        name = self.transport.get_extra_info("sockname")
        return str(name[0]), int(name[1])

    async def next(self) -> bytes:
        return await asyncio.wait_for(self.received.get(), 5)


@contextlib.asynccontextmanager
async def udp_client(host: str = "127.0.0.1") -> AsyncIterator[UdpClient]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(UdpClient, local_addr=(host, 0))
    try:
        yield client
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def started(
    tmp_path: Path, clock: FakeClock, **overrides: Any
) -> AsyncIterator[MasterServer]:
    settings = fast_settings(tmp_path / "data", **overrides)
    async with MasterServer(settings=settings, clock=clock) as server:
        yield server


async def test_binding_request_gets_the_client_address_back(tmp_path: Path) -> None:
    async with started(tmp_path, FakeClock()) as server, udp_client() as client:
        port = server.stun_port
        assert port is not None and port > 0
        txid = new_transaction_id()
        client.send(binding_request(txid, software="test"), ("127.0.0.1", port))
        answer = parse_message(await client.next())
        assert (answer.method, answer.cls) == (Method.BINDING, StunClass.SUCCESS)
        assert answer.transaction_id == txid
        assert answer.xor_mapped_address() == client.address
        assert answer.software() == "shards-lobby"
        assert answer.get(Attr.FINGERPRINT) is not None
    assert server.stun_port is None  # stopped with the lobby


async def test_ipv6_source_gets_an_ipv6_mapping() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = StunServer(StunResponder(rate=10, burst=10, max_sources=10, clock=FakeClock()))
    try:
        port = await server.start("::1", 0)
    except Exception as exc:  # noqa: BLE001 - the machine may have no ::1
        pytest.skip(f"cannot bind ::1: {exc}")
    try:
        async with udp_client("::1") as client:
            client.send(binding_request(new_transaction_id()), ("::1", port))
            answer = parse_message(await client.next())
            assert answer.xor_mapped_address() == client.address
    finally:
        await server.close()


def _garbage() -> list[bytes]:
    txid = new_transaction_id()
    valid = binding_request(txid)
    return [
        b"\x00",
        b"hello, world",
        bytes(range(256)),
        b"\xc3" + bytes(1199),  # looks like a QUIC Initial
        b"\x40\x00\x00\x04abcd",  # ChannelData
        valid[:-4],  # truncated
        valid[:-1] + bytes([valid[-1] ^ 0xFF]),  # FINGERPRINT mismatch
        valid[:4] + b"\x00\x00\x00\x00" + valid[8:],  # no magic cookie
        encode_message(Method.BINDING, StunClass.SUCCESS, txid),  # a response
        encode_message(Method.BINDING, StunClass.INDICATION, txid),
        encode_message(Method.BINDING, StunClass.ERROR, txid),
        allocate_request(txid),  # a TURN method: not ours to answer
        encode_message(0x0FFF, StunClass.REQUEST, txid),
    ]


async def test_garbage_is_ignored_and_the_server_keeps_answering(tmp_path: Path) -> None:
    async with started(tmp_path, FakeClock()) as server, udp_client() as client:
        assert server.stun_port is not None
        target = ("127.0.0.1", server.stun_port)
        garbage = _garbage()
        for junk in garbage:
            client.send(junk, target)
        txid = new_transaction_id()
        client.send(binding_request(txid), target)
        # loopback keeps order: the first answer is to the last datagram, none came before
        answer = parse_message(await client.next())
        assert answer.transaction_id == txid
        assert client.received.empty()
        assert server.stun is not None
        counters = server.stun.responder.counters
        assert (counters.ignored, counters.answered) == (len(garbage), 1)


async def test_unknown_required_attribute_gets_420(tmp_path: Path) -> None:
    async with started(tmp_path, FakeClock()) as server, udp_client() as client:
        assert server.stun_port is not None
        txid = new_transaction_id()
        request = encode_message(
            Method.BINDING, StunClass.REQUEST, txid, [(0x7ABC, b"?"), (0xC0DE, b"fine")]
        )
        client.send(request, ("127.0.0.1", server.stun_port))
        answer = parse_message(await client.next())
        assert answer.cls is StunClass.ERROR and answer.transaction_id == txid
        assert answer.error_code() == (420, "Unknown Attribute")
        assert answer.unknown_attributes() == [0x7ABC]


async def test_flood_from_one_address_is_limited(tmp_path: Path) -> None:
    clock = FakeClock()
    limits = {"stun_burst_per_address": 5, "stun_rate_per_address": 2}
    async with (
        started(tmp_path, clock, **limits) as server,
        udp_client() as flooder,
        udp_client() as same_host,
        udp_client("127.0.0.2") as other_host,
    ):
        assert server.stun_port is not None
        target = ("127.0.0.1", server.stun_port)
        flood = [new_transaction_id() for _ in range(40)]
        for txid in flood:
            flooder.send(binding_request(txid), target)
        # another port on the same address shares the bucket (a flood rotating ports is one)
        same_host.send(binding_request(new_transaction_id()), target)
        # a different address is not affected; its answer also orders after the flood
        marker = new_transaction_id()
        other_host.send(binding_request(marker), target)
        assert parse_message(await other_host.next()).transaction_id == marker
        answered = [parse_message(await flooder.next()).transaction_id for _ in range(5)]
        assert answered == flood[:5]
        assert flooder.received.empty() and same_host.received.empty()

        clock.advance(1.0)  # two tokens back
        later = [new_transaction_id() for _ in range(3)]
        for txid in later:
            flooder.send(binding_request(txid), target)
        marker = new_transaction_id()
        other_host.send(binding_request(marker), target)
        assert parse_message(await other_host.next()).transaction_id == marker
        assert [parse_message(await flooder.next()).transaction_id for _ in range(2)] == later[:2]
        assert flooder.received.empty()
        assert server.stun is not None
        assert server.stun.responder.counters.limited == 35 + 1 + 1


def test_the_rate_limit_table_is_bounded() -> None:
    responder = StunResponder(rate=1, burst=1, max_sources=100, clock=FakeClock())
    request = binding_request(new_transaction_id())
    for index in range(1000):
        assert responder.answer(request, (f"10.0.{index // 250}.{index % 250}", 4000)) is not None
    assert responder.tracked_sources == 100
    # an IPv4 client through a dual-stack socket is one source with its IPv4 form
    mapped = responder.answer(request, ("::ffff:192.0.2.7", 5000))
    assert mapped is not None and parse_message(mapped).xor_mapped_address() == ("192.0.2.7", 5000)
    assert responder.answer(request, ("192.0.2.7", 5001)) is None
    # one IPv6 /64 is one source, whatever the interface identifier
    assert responder.answer(request, ("2001:db8:1:2::1", 5000)) is not None
    assert responder.answer(request, ("2001:db8:1:2:ffff::9", 5000)) is None
    assert responder.answer(request, ("2001:db8:1:3::1", 5000)) is not None


async def test_stun_can_be_turned_off_or_moved(tmp_path: Path) -> None:
    async with started(tmp_path / "a", FakeClock(), stun_enabled=False) as server:
        assert server.stun_port is None
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    free = probe.getsockname()[1]
    probe.close()
    async with started(tmp_path / "b", FakeClock(), stun_port=free) as server:
        assert server.stun_port == free


async def test_default_stun_port_is_the_lobby_port_number(tmp_path: Path) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.bind(("127.0.0.1", 0))
    free = probe.getsockname()[1]
    probe.close()
    async with started(tmp_path, FakeClock(), port=free) as server:
        assert server.port == free
        assert server.stun_port == free


async def test_a_taken_stun_port_fails_start_cleanly(tmp_path: Path) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        server = MasterServer(
            settings=fast_settings(tmp_path, stun_port=taken.getsockname()[1]), clock=FakeClock()
        )
        from protocol.errors import LobbyError

        with pytest.raises(LobbyError, match="STUN"):
            await server.start()
        assert server.stun_port is None
        with pytest.raises(LobbyError):
            server.port  # noqa: B018 - torn down: the HTTP site is closed too
        await server.stop()
    finally:
        taken.close()


def test_cli_flags() -> None:
    assert settings_from(parse_args(["--stun-port", "3478"])).stun_port == 3478
    assert settings_from(parse_args(["--no-stun"])).stun_enabled is False
    with pytest.raises(SystemExit):
        parse_args(["--no-stun", "--stun-port", "1"])


def test_environment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from lobby.config import LobbySettings

    monkeypatch.setenv("SHARDS_STUN_PORT", "3478")
    monkeypatch.setenv("SHARDS_STUN_ENABLED", "false")
    settings = LobbySettings()
    assert (settings.stun_port, settings.stun_enabled) == (3478, False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120), st.booleans())
def test_responder_never_raises_and_answers_only_binding_requests(
    data: bytes, framed: bool
) -> None:
    if framed:  # a valid header around random attributes: reaches the parser
        body = data[: len(data) - len(data) % 4]
        data = (
            b"\x00\x01"
            + len(body).to_bytes(2, "big")
            + bytes.fromhex("2112a442")
            + bytes(12)
            + body
        )
    responder = StunResponder(rate=1000, burst=1000, max_sources=10, clock=FakeClock())
    answer = responder.answer(data, ("192.0.2.1", 1234))
    if answer is not None:
        request = parse_message(data)
        assert (request.method, request.cls) == (Method.BINDING, StunClass.REQUEST)
        assert parse_message(answer).transaction_id == request.transaction_id
    assert responder.counters.seen == 1
