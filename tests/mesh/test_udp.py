"""mesh.udp.UdpSocket on both loops: waiting datagrams arrive in batches, in order, with
their source; sends reach the peer; errors are logged and reading goes on; close stops it."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from mesh.link import Address
from mesh.udp import Batch, UdpSocket, _ReaderSocket
from tests.loops import BOTH_LOOPS

pytestmark = BOTH_LOOPS

LIBUV_READS_PER_READINESS = 32  # uv__udp_recvmsg's bound; asyncio's reader takes max_burst


class Collector:
    """``on_batch`` that keeps every batch and wakes a waiter once ``expect`` datagrams came."""

    def __init__(self, expect: int) -> None:
        self.batches: list[Batch] = []
        self.expect = expect
        self.done = asyncio.Event()

    def __call__(self, batch: Batch) -> None:
        self.batches.append(batch)
        if sum(len(b) for b in self.batches) >= self.expect:
            self.done.set()

    @property
    def datagrams(self) -> Batch:
        return [item for batch in self.batches for item in batch]


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


async def test_waiting_datagrams_arrive_as_one_batch(sender: socket.socket) -> None:
    got = Collector(20)
    udp = await UdpSocket.open("127.0.0.1", 0, got)
    try:
        # all sent before the loop runs again: the socket finds them waiting together
        for i in range(20):
            sender.sendto(bytes([i]) * 30, udp.sockname)
        await asyncio.wait_for(got.done.wait(), 5.0)
        assert len(got.batches) == 1
        assert [data[0] for data, _ in got.batches[0]] == list(range(20))
        assert {addr for _, addr in got.batches[0]} == {sender.getsockname()}
    finally:
        udp.close()
        udp.close()  # idempotent
        await udp.wait_closed()


async def test_a_long_burst_comes_in_order_in_as_few_batches_as_promised(
    sender: socket.socket,
) -> None:
    got = Collector(100)
    udp = await UdpSocket.open("127.0.0.1", 0, got)
    try:
        for i in range(100):
            sender.sendto(bytes([i]), udp.sockname)
        await asyncio.wait_for(got.done.wait(), 5.0)
        assert [data[0] for data, _ in got.datagrams] == list(range(100))
        # one batch per readiness: everything on asyncio's reader (max_burst 256), libuv
        # reads 32 at a time
        per_batch = LIBUV_READS_PER_READINESS if _on_uvloop() else 256
        assert len(got.batches) == -(-100 // per_batch)
    finally:
        udp.close()
        await udp.wait_closed()


async def test_a_lone_datagram_is_handed_over_before_the_timers_due_with_it(
    sender: socket.socket,
) -> None:
    """The owner sees a movement update before its own tick timer due in the same loop
    pass, as a reader would: otherwise the tick goes out without the ACK it could carry."""
    order: list[str] = []
    both = asyncio.Event()

    def note(what: str) -> None:
        order.append(what)
        if len(order) == 2:
            both.set()

    udp = await UdpSocket.open("127.0.0.1", 0, lambda batch: note("datagram"))
    try:
        sender.sendto(b"update", udp.sockname)
        asyncio.get_running_loop().call_later(0, note, "timer")
        await asyncio.wait_for(both.wait(), 5.0)
        assert order == ["datagram", "timer"]
    finally:
        udp.close()
        await udp.wait_closed()


async def test_a_failing_batch_handler_is_reported_and_reading_goes_on(
    sender: socket.socket,
) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    heard = asyncio.Event()

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        reported.append(context)
        heard.set()

    loop.set_exception_handler(handler)
    got: list[bytes] = []
    second = asyncio.Event()

    def on_batch(batch: Batch) -> None:
        got.extend(data for data, _ in batch)
        if len(got) == 1:
            raise RuntimeError("a bug in the owner")
        second.set()

    udp = await UdpSocket.open("127.0.0.1", 0, on_batch)
    try:
        sender.sendto(b"first", udp.sockname)
        await asyncio.wait_for(heard.wait(), 5.0)  # as of any callback's failure
        sender.sendto(b"second", udp.sockname)
        await asyncio.wait_for(second.wait(), 5.0)
        assert got == [b"first", b"second"]
        assert isinstance(reported[0].get("exception"), RuntimeError)
    finally:
        udp.close()
        await udp.wait_closed()


async def test_a_burst_is_bounded_and_the_rest_follows(sender: socket.socket) -> None:
    got = Collector(10)
    udp = await UdpSocket.open("127.0.0.1", 0, got, max_burst=4)
    try:
        for i in range(10):
            sender.sendto(bytes([i]), udp.sockname)
        await asyncio.wait_for(got.done.wait(), 5.0)
        assert [len(b) for b in got.batches] == [4, 4, 2]
        assert [data[0] for data, _ in got.datagrams] == list(range(10))
    finally:
        udp.close()
        await udp.wait_closed()


async def test_sendto_reaches_the_peer_and_closed_socket_drops() -> None:
    received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()

    def on_batch(batch: Batch) -> None:
        for item in batch:
            received.put_nowait(item)

    a = await UdpSocket.open("127.0.0.1", 0, on_batch)
    b = await UdpSocket.open("127.0.0.1", 0, on_batch)
    target = b.sockname
    try:
        a.sendto(b"hello", target)
        data, addr = await asyncio.wait_for(received.get(), 5.0)
        assert (data, addr) == (b"hello", a.sockname)
    finally:
        a.close()
        b.close()
    a.sendto(b"after close", target)  # no error, nothing sent
    await a.wait_closed()
    await b.wait_closed()


class _FullBuffer(socket.socket):
    """A UDP socket whose kernel buffer is full while ``full`` is set (the fault injected:
    loopback hands a datagram over in the sending call, so it never fills for real)."""

    full = False

    def sendto(self, data: Any, *args: Any) -> int:
        if self.full:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        return super().sendto(data, *args)


async def test_a_full_buffer_keeps_the_newest_sends_up_to_the_bound() -> None:
    got = Collector(4)
    receiver = await UdpSocket.open("127.0.0.1", 0, got)
    loop = asyncio.get_running_loop()
    udp: UdpSocket
    if _on_uvloop():
        udp = await UdpSocket.open("127.0.0.1", 0, lambda batch: None, max_backlog=4)
        feed = udp._feed  # type: ignore[attr-defined]  # the transport's protocol
        full = feed.pause_writing  # what the transport calls once the kernel refuses one
        drained = feed.resume_writing
    else:
        sock = _FullBuffer(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        udp = _ReaderSocket(loop, sock, lambda batch: None, max_burst=256, max_backlog=4)

        def full() -> None:
            sock.full = True

        def drained() -> None:
            sock.full = False  # the socket is writable: the backlog goes out when the loop runs

    try:
        full()
        for i in range(10):
            udp.sendto(bytes([i]), receiver.sockname)
        drained()
        await asyncio.wait_for(got.done.wait(), 5.0)
        udp.sendto(b"after", receiver.sockname)  # sending goes on directly
        got.expect = 5
        got.done.clear()
        await asyncio.wait_for(got.done.wait(), 5.0)
        assert [data for data, _ in got.datagrams] == [b"\x06", b"\x07", b"\x08", b"\t", b"after"]
    finally:
        udp.close()
        receiver.close()
        await udp.wait_closed()
        await receiver.wait_closed()


async def test_a_send_to_an_address_of_the_other_family_is_dropped_not_raised() -> None:
    got = Collector(1)
    udp = await UdpSocket.open("127.0.0.1", 0, got)
    try:
        # a peer's candidate list may hold IPv6 addresses: an IPv4 socket cannot send there
        udp.sendto(b"lost", ("::1", 9, 0, 0))
        udp.sendto(b"kept", udp.sockname)
        await asyncio.wait_for(got.done.wait(), 5.0)
        assert [data for data, _ in got.datagrams] == [b"kept"]
    finally:
        udp.close()
        await udp.wait_closed()


async def test_close_stops_delivery_even_of_datagrams_already_read(
    sender: socket.socket,
) -> None:
    """``a``'s datagram closes ``early`` and ``late``, which were sent datagrams just before
    and just after it: read in the same loop pass (``early``'s pair gathered into a batch
    not yet handed over on uvloop), none is handed over after the close."""
    closed = False
    after_close: list[Batch] = []
    a_got = asyncio.Event()

    def on_a(batch: Batch) -> None:
        nonlocal closed
        early.close()
        late.close()
        closed = True
        a_got.set()

    def on_other(batch: Batch) -> None:
        if closed:
            after_close.append(batch)

    a = await UdpSocket.open("127.0.0.1", 0, on_a)
    early = await UdpSocket.open("127.0.0.1", 0, on_other)
    late = await UdpSocket.open("127.0.0.1", 0, on_other)
    try:
        early_address, late_address = early.sockname, late.sockname
        sender.sendto(b"to early", early_address)
        sender.sendto(b"to early, again", early_address)
        sender.sendto(b"to a", a.sockname)
        sender.sendto(b"to late", late_address)
        await asyncio.wait_for(a_got.wait(), 5.0)
        await early.wait_closed()
        await late.wait_closed()
        a_got.clear()
        sender.sendto(b"to late, later", late_address)
        a.sendto(b"to a, later", a.sockname)  # a round trip on the loop: late had its chance
        await asyncio.wait_for(a_got.wait(), 5.0)
        assert after_close == []
    finally:
        a.close()
        early.close()
        late.close()
        await a.wait_closed()


class _ErrorLogged(logging.Handler):
    """Listens to ``mesh.node`` at debug level (until :meth:`detach`) and wakes a waiter
    once a record mentioning ``text`` (any case) was logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.seen = asyncio.Event()
        self._log = logging.getLogger("mesh.node")
        self._level = self._log.level
        self._log.addHandler(self)
        self._log.setLevel(logging.DEBUG)

    def detach(self) -> None:
        self._log.removeHandler(self)
        self._log.setLevel(self._level)

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage().lower():
            self.seen.set()


def _escaped_exceptions() -> list[dict[str, object]]:
    """What reaches the running loop's exception handler from now on."""
    escaped: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: escaped.append(ctx))
    return escaped


def _on_uvloop() -> bool:
    return not isinstance(asyncio.get_running_loop(), asyncio.SelectorEventLoop)


async def test_a_send_the_kernel_refuses_is_logged_and_the_socket_goes_on(
    sender: socket.socket,
) -> None:
    escaped = _escaped_exceptions()
    logged = _ErrorLogged("permission denied")
    got = Collector(2)
    udp = await UdpSocket.open("127.0.0.1", 0, got)
    try:
        # broadcast without SO_BROADCAST: refused (EACCES) before it leaves the machine
        udp.sendto(b"everyone?", ("255.255.255.255", 9))
        await asyncio.wait_for(logged.seen.wait(), 5.0)
        udp.sendto(b"self", udp.sockname)
        sender.sendto(b"peer", udp.sockname)
        await asyncio.wait_for(got.done.wait(), 5.0)
        assert sorted(data for data, _ in got.datagrams) == [b"peer", b"self"]
        assert escaped == []
    finally:
        logged.detach()
        udp.close()
        await udp.wait_closed()


IP_RECVERR = 11  # <linux/in.h>; Python's socket module does not name it


@pytest.mark.skipif(sys.platform != "linux", reason="IP_RECVERR is Linux's")
async def test_an_icmp_error_is_logged_and_reading_goes_on(sender: socket.socket) -> None:
    if _on_uvloop():
        # Linux reports ICMP errors on an unconnected socket only with IP_RECVERR, and
        # uvloop 0.23 crashes (SIGSEGV) on the error queue that fills: its libuv reads
        # the queue on POLLERR and uvloop takes the negative length for a size
        pytest.skip("no ICMP error reaches an unconnected socket on uvloop without a crash")
    escaped = _escaped_exceptions()
    logged = _ErrorLogged("refused")
    got = Collector(1)
    udp = await UdpSocket.open("127.0.0.1", 0, got)
    try:
        sock: socket.socket = udp._sock  # the fault: ask Linux to report ICMP errors on it
        sock.setsockopt(socket.SOL_IP, IP_RECVERR, 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed_port:
            closed_port.bind(("127.0.0.1", 0))
            nobody = closed_port.getsockname()
        udp.sendto(b"anyone?", nobody)  # answered by an ICMP port unreachable
        await asyncio.wait_for(logged.seen.wait(), 5.0)
        sock.recvmsg(1, 1024, socket.MSG_ERRQUEUE)  # else the socket stays in error (POLLERR)
        sender.sendto(b"after", udp.sockname)
        await asyncio.wait_for(got.done.wait(), 5.0)
        assert [data for data, _ in got.datagrams] == [b"after"]
        assert escaped == []
    finally:
        logged.detach()
        udp.close()
        await udp.wait_closed()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_binds_ipv6() -> None:
    got = Collector(1)
    udp = await UdpSocket.open("::1", 0, got)
    try:
        assert udp.family == socket.AF_INET6
        assert udp.sockname[0] == "::1"
        udp.sendto(b"self", udp.sockname)
        await asyncio.wait_for(got.done.wait(), 5.0)
        assert got.datagrams[0][0] == b"self"
    finally:
        udp.close()
        await udp.wait_closed()
