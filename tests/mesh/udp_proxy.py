"""A seeded, bounded user-space UDP proxy on loopback: loss, reordering, duplication,
one-way black holes.

The client talks to ``proxy.address``; the proxy forwards to ``target`` from a
second socket and sends the replies back from the first, so both endpoints
see a consistent peer address. Every fault decision comes from one
``random.Random(seed)``; the proxy stops forwarding after ``max_packets``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Faults:
    loss: float = 0.2
    duplicate: float = 0.1
    reorder: float = 0.2
    max_delay: float = 0.02
    drop_to_target: bool = False
    """Black-hole everything the client sends (may be flipped while running)."""
    drop_to_client: bool = False
    """Black-hole everything the target answers (may be flipped while running)."""


@dataclass
class ProxyStats:
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    delayed: int = 0
    log: list[str] = field(default_factory=list)


class _Side(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpProxy, inbound: bool) -> None:
        self._proxy = proxy
        self._inbound = inbound

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._proxy._received(data, addr, self._inbound)


class UdpProxy:
    """Forwards one client <-> ``target`` with seeded faults (see the module docstring)."""

    def __init__(
        self, target: tuple[str, int], *, seed: int, faults: Faults, max_packets: int = 50_000
    ) -> None:
        self.target = target
        self.faults = faults
        self.rng = random.Random(seed)
        self.max_packets = max_packets
        self.stats = ProxyStats()
        self.watch: Callable[[bytes, bool], None] | None = None
        """Called with every datagram that reaches the proxy (and whether it came from the
        client), forwarded or not: a test waits on what was sent."""
        self._front: asyncio.DatagramTransport | None = None
        self._back: asyncio.DatagramTransport | None = None
        self._client: tuple[str, int] | None = None
        self._timers: set[asyncio.TimerHandle] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._front, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self, True), local_addr=("127.0.0.1", 0)
        )
        self._back, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self, False), local_addr=("127.0.0.1", 0)
        )

    @property
    def address(self) -> tuple[str, int]:
        assert self._front is not None
        host, port = self._front.get_extra_info("sockname")[:2]
        return (host, port)

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for transport in (self._front, self._back):
            if transport is not None:
                transport.close()

    async def __aenter__(self) -> UdpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _received(self, data: bytes, addr: tuple[str, int], inbound: bool) -> None:
        if self.watch is not None:
            self.watch(data, inbound)
        if inbound:
            self._client = addr
            out, dest = self._back, self.target
        else:
            if addr != self.target or self._client is None:
                return
            out, dest = self._front, self._client
        if out is None or self.stats.forwarded >= self.max_packets:
            return
        rng, f = self.rng, self.faults
        if f.drop_to_target if inbound else f.drop_to_client:
            self.stats.dropped += 1
            return
        if rng.random() < f.loss:
            self.stats.dropped += 1
            return
        copies = 2 if rng.random() < f.duplicate else 1
        self.stats.duplicated += copies - 1
        for _ in range(copies):
            if rng.random() < f.reorder:
                self.stats.delayed += 1
                self._later(rng.uniform(0.0, f.max_delay), out, data, dest)
            else:
                self._send(out, data, dest)

    def _later(
        self, delay: float, out: asyncio.DatagramTransport, data: bytes, dest: tuple[str, int]
    ) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self._send(out, data, dest)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _send(self, out: asyncio.DatagramTransport, data: bytes, dest: tuple[str, int]) -> None:
        if out.is_closing():
            return
        self.stats.forwarded += 1
        out.sendto(data, dest)
