"""A node's UDP socket on an asyncio loop: datagrams in batches, sends with a bounded backlog.

The owner (:class:`~mesh.node.PeerNode`) feeds every datagram of a batch to its QUIC
core and flushes once per batch, so what matters here is that a burst arrives as one
batch and that a lone datagram costs as little as the loop allows. Two ways to read,
chosen by the loop (:meth:`UdpSocket.open`):

* **The loop's own datagram transport** (uvloop, and any loop that is not asyncio's
  selector loop). uvloop's is C: libuv reads until ``EAGAIN`` (at most 32 datagrams per
  readiness) and sends in C. When the first datagram of a readiness is alone in the
  kernel's queue (``FIONREAD``: most wake-ups), it is handed over at once, inside the
  transport's callback, so the owner handles it before the loop's due timers run, as a
  reader would. When more are queued, the datagrams delivered in that loop iteration
  gather into one batch whose hand-over the first schedules with ``call_soon``: it runs
  in the loop's next pass over its ready queue (after the timers due, before the loop
  polls and may block again). A batch is therefore what one readiness delivered (up to
  32 on uvloop), capped at ``max_burst``; a longer burst continues in the next batch.
* **A reader of its own** on asyncio's selector loop, whose datagram transport is Python
  and reads one datagram per loop iteration (a burst of 20 would become 20 batches and
  20 flushes). Each readiness callback reads up to ``max_burst`` datagrams into one
  batch. Most callbacks find exactly one: after the first datagram the reader asks the
  kernel whether another is queued (``FIONREAD``) instead of paying a ``recvfrom`` that
  raises ``BlockingIOError``; only when one is does it read on until ``EAGAIN``.

Sends go out at once. When the kernel buffer is full they wait in a backlog of at most
``max_backlog`` datagrams, oldest dropped past the bound (this is UDP, and QUIC recovers
what it needs), written in order once the socket can take them again: on the selector
loop when the socket turns writable, on a transport when it resumes writing (its own
buffer is held to one queued send: its high-water mark is zero). A send the kernel or
the transport refuses (an unreachable network, an address of the other family, a name
where a transport takes only IP addresses) is logged at debug level and dropped: peers
hand us candidate addresses, so this is input, not a bug.

ICMP errors the kernel reports on the socket (a port unreachable answering an earlier
send) are logged at debug level and reading goes on. Linux reports them on an unconnected
socket only with ``IP_RECVERR``, which this socket leaves off (uvloop 0.23 even crashes on
the error queue that option fills). :meth:`UdpSocket.close` is
idempotent and stops delivery at once, batches not yet handed over included; a
transport frees the port when the loop next runs (:meth:`UdpSocket.wait_closed`).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import fcntl
import logging
import socket
import termios
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from mesh.link import Address

__all__ = ["Batch", "UdpSocket"]

logger = logging.getLogger("mesh.node")

Batch = list[tuple[bytes, Address]]
"""Datagrams handed over together, in arrival order, with their source."""

OnBatch = Callable[[Batch], None]

_MAX_DATAGRAM = 65536
_NOTHING_QUEUED = bytes(4)  # FIONREAD's answer (the next datagram's size) when none waits


class UdpSocket(ABC):
    """One bound, non-blocking UDP socket: batched reads, direct writes (module docstring).

    Use :meth:`open` (a coroutine: it resolves ``host`` and picks the reading path for
    the running loop); ``on_batch`` is called in the loop with each batch.
    """

    def __init__(self, sock: socket.socket, max_backlog: int) -> None:
        self._sock = sock
        self.family = sock.family
        self._state = _State.OPEN
        self._backlog: collections.deque[tuple[bytes, Address]] = collections.deque(
            maxlen=max_backlog
        )

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        on_batch: OnBatch,
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
            if isinstance(loop, asyncio.SelectorEventLoop):
                return _ReaderSocket(loop, sock, on_batch, max_burst, max_backlog)
            return await _TransportSocket.attach(loop, sock, on_batch, max_burst, max_backlog)
        except BaseException:
            sock.close()
            raise

    @property
    def sockname(self) -> Address:
        """The bound address as the socket reports it."""
        name: Address = self._sock.getsockname()
        return name

    @abstractmethod
    def sendto(self, data: bytes, addr: Address) -> None:
        """Send one datagram now, or queue it behind earlier ones the kernel did not take."""

    @abstractmethod
    def close(self) -> None:
        """Stop reading and writing (nothing more is handed over) and release the socket;
        idempotent."""

    @abstractmethod
    async def wait_closed(self) -> None:
        """Return once the port is free (after :meth:`close`)."""

    def _hold(self, data: bytes, addr: Address) -> None:
        """A send while not OPEN: into the backlog when BACKLOGGED, dropped when CLOSED."""
        if self._state is _State.BACKLOGGED:
            self._backlog.append((data, addr))


class _State(enum.Enum):
    """Whether sends go out: OPEN <-> BACKLOGGED (kernel buffer full) -> CLOSED, from either."""

    OPEN = "open"
    BACKLOGGED = "backlogged"
    CLOSED = "closed"


_OPEN, _BACKLOGGED, _CLOSED = _State.OPEN, _State.BACKLOGGED, _State.CLOSED
_BAD_ADDRESS = (OSError, ValueError, TypeError)  # unreachable, wrong family, not an IP address


class _ReaderSocket(UdpSocket):
    """asyncio's selector loop: its own reader and ``sendto`` on the socket."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_batch: OnBatch,
        max_burst: int,
        max_backlog: int,
    ) -> None:
        super().__init__(sock, max_backlog)
        self._loop = loop
        self._fd = sock.fileno()
        self._on_batch = on_batch
        self._max_burst = max_burst
        self._queued = bytearray(4)
        loop.add_reader(self._fd, self._read_ready)

    def sendto(self, data: bytes, addr: Address) -> None:
        if self._state is not _OPEN:
            self._hold(data, addr)
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._state = _BACKLOGGED
            self._backlog.append((data, addr))
            self._loop.add_writer(self._fd, self._write_ready)
        except _BAD_ADDRESS as exc:  # the datagram is lost, as UDP may lose it
            logger.debug("UDP send to %r failed: %s", addr, exc)

    def close(self) -> None:
        if self._state is _CLOSED:
            return
        self._state = _CLOSED
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._backlog.clear()
        self._sock.close()

    async def wait_closed(self) -> None:
        return  # close() closed the socket itself

    def _read_ready(self) -> None:
        recvfrom = self._sock.recvfrom
        batch: Batch = []
        try:
            batch.append(recvfrom(_MAX_DATAGRAM))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # an ICMP error queued on the socket; read on
            logger.debug("UDP receive error: %s", exc)
        else:
            # most wake-ups find one datagram: asking is cheaper than a recvfrom that
            # raises. A queued empty datagram also answers 0; it keeps the socket
            # readable, so the next callback reads it.
            fcntl.ioctl(self._fd, termios.FIONREAD, self._queued, True)
            if self._queued == _NOTHING_QUEUED:
                self._on_batch(batch)
                return
        for _ in range(self._max_burst - 1):
            try:
                batch.append(recvfrom(_MAX_DATAGRAM))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                logger.debug("UDP receive error: %s", exc)
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
            except _BAD_ADDRESS as exc:
                logger.debug("UDP send to %r failed: %s", addr, exc)
            backlog.popleft()
        self._state = _OPEN
        self._loop.remove_writer(self._fd)


class _TransportSocket(UdpSocket):
    """Any other loop (uvloop): the loop's own datagram transport, read through a
    :class:`_Feed` that batches what one loop iteration delivers."""

    _transport: asyncio.DatagramTransport

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_batch: OnBatch,
        max_burst: int,
        max_backlog: int,
    ) -> None:
        super().__init__(sock, max_backlog)
        self._feed = _Feed(loop, sock.fileno(), on_batch, max_burst, self._pause, self._resume)

    @classmethod
    async def attach(
        cls,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_batch: OnBatch,
        max_burst: int,
        max_backlog: int,
    ) -> _TransportSocket:
        """Hand the bound ``sock`` to a new transport of ``loop``."""
        self = cls(loop, sock, on_batch, max_burst, max_backlog)
        transport, _ = await loop.create_datagram_endpoint(lambda: self._feed, sock=sock)
        if isinstance(transport, _WriteLimits):  # asyncio's and uvloop's transports all are
            # pause as soon as the kernel refuses one: what waits beyond it is ours to bound
            transport.set_write_buffer_limits(high=0)
        self._transport = transport
        return self

    def sendto(self, data: bytes, addr: Address) -> None:
        if self._state is not _OPEN:
            self._hold(data, addr)
            return
        try:
            self._transport.sendto(data, addr)  # its OSErrors come to _Feed.error_received
        except _BAD_ADDRESS as exc:
            logger.debug("UDP send to %r failed: %s", addr, exc)

    def close(self) -> None:
        if self._state is _CLOSED:
            return
        self._state = _CLOSED
        self._backlog.clear()
        self._feed.stop()
        self._transport.abort()  # drops what it still queues, as the reader's close does

    async def wait_closed(self) -> None:
        await asyncio.shield(self._feed.lost)

    def _pause(self) -> None:
        if self._state is _OPEN:
            self._state = _BACKLOGGED

    def _resume(self) -> None:
        if self._state is not _BACKLOGGED:
            return
        self._state = _OPEN
        backlog = self._backlog
        while backlog and self._state is _OPEN:  # sendto may pause the transport again
            data, addr = backlog.popleft()
            self.sendto(data, addr)


@runtime_checkable
class _WriteLimits(Protocol):
    """A transport with flow control (asyncio's ``WriteTransport`` method)."""

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...


class _Feed(asyncio.DatagramProtocol):
    """The transport's protocol: batches for ``on_batch``, flow control for the socket."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        on_batch: OnBatch,
        max_burst: int,
        on_pause: Callable[[], None],
        on_resume: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._fd = fd
        self._queued = bytearray(4)
        self._on_batch = on_batch
        self._max_burst = max_burst
        self._on_pause = on_pause
        self._on_resume = on_resume
        self._batch: Batch | None = None  # the one still gathering, its hand-over scheduled
        self._stopped = False
        self.lost: asyncio.Future[None] = loop.create_future()

    def stop(self) -> None:
        """Hand nothing more over, gathered or not."""
        self._stopped = True
        self._batch = None

    def datagram_received(self, data: bytes, addr: Address) -> None:
        batch = self._batch
        if batch is None:
            if self._stopped:  # closed: a loop may still deliver what it had read
                return
            fcntl.ioctl(self._fd, termios.FIONREAD, self._queued, True)
            if self._queued == _NOTHING_QUEUED:  # alone, as most are: no batch to wait for
                # a failure here reaches the loop's exception handler, the transport reads on
                self._on_batch([(data, addr)])
                return
        elif len(batch) < self._max_burst:
            batch.append((data, addr))
            return
        self._batch = batch = [(data, addr)]
        self._loop.call_soon(self._hand_over, batch)

    def error_received(self, exc: Exception) -> None:
        logger.debug("UDP error: %s", exc)  # an ICMP error; the transport reads on

    def pause_writing(self) -> None:
        self._on_pause()

    def resume_writing(self) -> None:
        self._on_resume()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            logger.warning("UDP socket failed: %s", exc)
        self.stop()
        if not self.lost.done():
            self.lost.set_result(None)

    def _hand_over(self, batch: Batch) -> None:
        if self._batch is batch:
            self._batch = None
        if not self._stopped:
            self._on_batch(batch)
