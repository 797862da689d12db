"""mesh.udp.UdpSocket: every datagram waiting is read in one batch, sends reach the peer."""

from __future__ import annotations

import asyncio
import socket

import pytest

from mesh.link import Address
from mesh.udp import Batch, UdpSocket


async def test_waiting_datagrams_arrive_as_one_batch() -> None:
    batches: list[Batch] = []
    got = asyncio.Event()

    def on_batch(batch: Batch) -> None:
        batches.append(batch)
        got.set()

    udp = await UdpSocket.open("127.0.0.1", 0, on_batch)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.bind(("127.0.0.1", 0))
        # all sent before the loop runs again: the reader finds them waiting together
        for i in range(20):
            sender.sendto(bytes([i]) * 30, udp.sockname)
        await asyncio.wait_for(got.wait(), 5.0)
        assert len(batches) == 1
        assert [data[0] for data, _ in batches[0]] == list(range(20))
        assert {addr for _, addr in batches[0]} == {sender.getsockname()}
    finally:
        sender.close()
        udp.close()
        udp.close()  # idempotent


async def test_a_burst_is_bounded_and_the_rest_follows() -> None:
    batches: list[Batch] = []
    done = asyncio.Event()

    def on_batch(batch: Batch) -> None:
        batches.append(batch)
        if sum(len(b) for b in batches) == 10:
            done.set()

    udp = await UdpSocket.open("127.0.0.1", 0, on_batch, max_burst=4)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(10):
            sender.sendto(bytes([i]), udp.sockname)
        await asyncio.wait_for(done.wait(), 5.0)
        assert [len(b) for b in batches] == [4, 4, 2]
    finally:
        sender.close()
        udp.close()


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


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_binds_ipv6() -> None:
    udp = await UdpSocket.open("::1", 0, lambda batch: None)
    try:
        assert udp.family == socket.AF_INET6
        assert udp.sockname[0] == "::1"
    finally:
        udp.close()
