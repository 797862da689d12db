"""A non-blocking UDP socket on an asyncio loop that reads every waiting datagram at once.

asyncio's datagram transport (and uvloop's) hands the protocol one datagram per
readiness callback, so a node with 15 peers sending at 30 Hz wakes once per
datagram, and the QUIC driver behind it flushes once per datagram. When the
loop falls behind (a busy game frame, a shared machine), the kernel buffer
fills and datagrams are lost before anyone reads them.

:class:`UdpSocket` registers its own reader instead: each callback drains up
to ``max_burst`` datagrams (``recvfrom`` until ``EAGAIN``) and hands them to
the owner as one batch, so the owner processes a burst and flushes once.
Sends go straight to ``sendto``; when the kernel buffer is full they wait in a
bounded backlog written when the socket is writable again (oldest dropped past
the bound: this is UDP, and QUIC recovers what it needs).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from collections.abc import Callable

from mesh.link import Address

__all__ = ["UdpSocket"]

logger = logging.getLogger("mesh.node")

Batch = list[tuple[bytes, Address]]
"""Datagrams read in one readiness callback, in arrival order, with their source."""

_MAX_DATAGRAM = 65536


class UdpSocket:
    """One bound, non-blocking UDP socket: batched reads, direct writes (module docstring).

    Use :meth:`open` (a coroutine: it resolves ``host``); ``on_batch`` is called
    in the loop with every datagram read by one readiness callback.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_batch: Callable[[Batch], None],
        *,
        max_burst: int = 256,
        max_backlog: int = 1024,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._on_batch = on_batch
        self._max_burst = max_burst
        self._backlog: collections.deque[tuple[bytes, Address]] = collections.deque(
            maxlen=max_backlog
        )
        self._closed = False
        self.family = sock.family
        loop.add_reader(sock.fileno(), self._read_ready)

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        on_batch: Callable[[Batch], None],
        *,
        max_burst: int = 256,
        max_backlog: int = 1024,
    ) -> UdpSocket:
        """Bind a UDP socket on ``host``:``port`` (the first address ``host`` resolves to)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP, flags=socket.AI_PASSIVE
        )
        if not infos:  # pragma: no cover - getaddrinfo raises rather than return nothing
            raise OSError(f"cannot resolve {host!r}")
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.bind(sockaddr)
        except BaseException:
            sock.close()
            raise
        return cls(loop, sock, on_batch, max_burst=max_burst, max_backlog=max_backlog)

    @property
    def sockname(self) -> Address:
        """The bound address as the socket reports it."""
        name: Address = self._sock.getsockname()
        return name

    def sendto(self, data: bytes, addr: Address) -> None:
        """Send one datagram now, or queue it behind earlier ones the kernel did not take."""
        if self._closed:
            return
        if self._backlog:
            self._backlog.append((data, addr))
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._backlog.append((data, addr))
            self._loop.add_writer(self._sock.fileno(), self._write_ready)
        except OSError as exc:  # unreachable host, ICMP error: the datagram is lost
            logger.debug("UDP send to %s failed: %s", addr, exc)

    def close(self) -> None:
        """Stop reading and writing and close the socket (idempotent)."""
        if self._closed:
            return
        self._closed = True
        fd = self._sock.fileno()
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)
        self._backlog.clear()
        self._sock.close()

    def _read_ready(self) -> None:
        batch: Batch = []
        recvfrom = self._sock.recvfrom
        for _ in range(self._max_burst):
            try:
                data, addr = recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error queued on the socket; read on
                logger.debug("UDP receive error: %s", exc)
                continue
            batch.append((data, addr))
        if batch:
            self._on_batch(batch)

    def _write_ready(self) -> None:
        backlog = self._backlog
        while backlog:
            data, addr = backlog[0]
            try:
                self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("UDP send to %s failed: %s", addr, exc)
            backlog.popleft()
        self._loop.remove_writer(self._sock.fileno())
