"""User-space delay proxies (the kernel here has no netem): every byte or datagram is held
``delay`` seconds in each direction, order kept, loopback only.

``udp_delay_child`` forwards datagrams arriving on its port to one target, with one upstream
socket per client address so replies find their way back (what a NAT does). ``tcp_delay_child``
does the same per accepted TCP connection. Each announces its port and answers until "stop".
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["DelayLine", "tcp_delay_child", "udp_delay_child"]


class DelayLine:
    """Calls ``emit(item)`` ``delay`` seconds after ``push(item)``, in push order."""

    def __init__(self, delay: float, emit: Callable[[Any], None]) -> None:
        self.delay = delay
        self.emit = emit
        self.queue: deque[tuple[float, Any]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()

    def push(self, item: Any) -> None:
        self.queue.append((self.loop.time() + self.delay, item))
        if self.timer is None:
            self.timer = self.loop.call_at(self.queue[0][0], self._fire)

    def _fire(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now + 0.0005:
            self.emit(self.queue.popleft()[1])
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self._fire)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_data: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_data = on_data

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_data(data, addr)


async def udp_delay_child(ctl: Any, target: tuple[str, int], delay: float) -> None:
    """Child body: a UDP proxy to ``target`` adding ``delay`` each way."""
    loop = asyncio.get_running_loop()
    upstreams: dict[tuple[str, int], tuple[asyncio.DatagramTransport, DelayLine]] = {}
    front: asyncio.DatagramTransport | None = None
    lines: list[DelayLine] = []

    async def upstream_for(client: tuple[str, int]) -> tuple[asyncio.DatagramTransport, DelayLine]:
        back = DelayLine(delay, lambda data: front.sendto(data, client) if front else None)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(lambda data, addr: back.push(data)), local_addr=("127.0.0.1", 0)
        )
        forward = DelayLine(delay, lambda data: transport.sendto(data, target))
        lines.extend((back, forward))
        return transport, forward

    pending: dict[tuple[str, int], list[bytes]] = {}

    def from_client(data: bytes, addr: tuple[str, int]) -> None:
        if addr in upstreams:
            upstreams[addr][1].push(data)
            return
        if addr in pending:
            pending[addr].append(data)
            return
        pending[addr] = [data]

        async def open_upstream() -> None:
            upstreams[addr] = await upstream_for(addr)
            for item in pending.pop(addr):
                upstreams[addr][1].push(item)

        loop.create_task(open_upstream())

    front, _ = await loop.create_datagram_endpoint(
        lambda: _Udp(from_client), local_addr=("127.0.0.1", 0)
    )
    ctl.send(("ready", int(front.get_extra_info("sockname")[1])))
    try:
        await ctl.serve({})
    finally:
        for line in lines:
            line.close()
        for transport, _ in upstreams.values():
            transport.close()
        front.close()


class _Pipe(asyncio.Protocol):
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.transport: asyncio.Transport | None = None
        self.line: DelayLine | None = None  # towards the other side
        self.peer: _Pipe | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.line is not None:
            self.line.push(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            peer = self.peer
            asyncio.get_running_loop().call_later(
                self.delay, lambda: peer.transport.close() if peer.transport else None
            )


async def tcp_delay_child(ctl: Any, target: tuple[str, int], delay: float) -> None:
    """Child body: a TCP proxy to ``target`` adding ``delay`` each way."""
    loop = asyncio.get_running_loop()

    def write_to(pipe: _Pipe) -> Callable[[bytes], None]:
        def emit(data: bytes) -> None:
            if pipe.transport is not None and not pipe.transport.is_closing():
                pipe.transport.write(data)

        return emit

    def accepted() -> _Pipe:
        front = _Pipe(delay)
        held: list[bytes] = []
        front.line = DelayLine(delay, held.append)

        async def connect() -> None:
            try:
                _, back = await loop.create_connection(lambda: _Pipe(delay), *target)
            except OSError:
                if front.transport is not None:
                    front.transport.close()
                return
            front.peer, back.peer = back, front
            assert front.line is not None
            front.line.emit = write_to(back)
            for item in held:
                write_to(back)(item)
            back.line = DelayLine(delay, write_to(front))

        loop.create_task(connect())
        return front

    server = await loop.create_server(accepted, "127.0.0.1", 0)
    ctl.send(("ready", int(server.sockets[0].getsockname()[1])))
    try:
        await ctl.serve({})
    finally:
        server.close()
