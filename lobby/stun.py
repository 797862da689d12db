"""The lobby's STUN responder: answers Binding requests (RFC 8489) on a UDP port.

A peer behind a NAT sends a Binding request from its mesh UDP socket and learns
from the answer's XOR-MAPPED-ADDRESS how the internet sees it (its
server-reflexive address), so the one-command lobby is all the rendezvous
infrastructure a small deployment needs.

:class:`StunResponder` is the asyncio datagram protocol over the pure codec
(:mod:`protocol.stun`). It is deliberately narrow and cheap under attack:

- everything that is not a well-framed STUN request is dropped unanswered, with
  no parsing beyond a 20-byte header check (garbage costs almost nothing);
- requests are rate-limited per source IPv4 address or IPv6 /64 (not per port:
  a flood that rotates ports, or addresses inside one IPv6 subnet, is one
  source) with token buckets in a table bounded to ``max_sources`` entries (the
  least recently seen source is forgotten first);
- a well-formed Binding request gets a success answer with XOR-MAPPED-ADDRESS
  and FINGERPRINT; one naming comprehension-required attributes this codec does
  not know gets 420 (Unknown Attribute), as RFC 8489 requires; every other
  message (responses, indications, other methods, malformed) is dropped.

An answer is never larger than its request plus a few dozen bytes and goes only
to the request's source, so the responder amplifies nothing.
:class:`StunServer` binds it; :class:`~lobby.server.MasterServer` starts one
unless ``stun_enabled`` is off.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any, cast

from lobby.config import Clock, LobbySettings
from lobby.ratelimit import RateLimiter
from protocol.errors import LobbyError, StunError
from protocol.stun import (
    Address,
    Method,
    StunClass,
    binding_error,
    binding_success,
    is_stun,
    parse_message,
)

__all__ = ["StunCounters", "StunResponder", "StunServer"]

log = logging.getLogger(__name__)

SOFTWARE = "shards-lobby"


@dataclass(slots=True)
class StunCounters:
    """What the responder did, for status and tests."""

    answered: int = 0
    rejected: int = 0  # well-formed requests answered with an error (420)
    limited: int = 0  # requests dropped by the per-address rate limit
    ignored: int = 0  # everything else: not STUN, not a Binding request, malformed

    @property
    def seen(self) -> int:
        return self.answered + self.rejected + self.limited + self.ignored


class StunResponder(asyncio.DatagramProtocol):
    """Answers STUN Binding requests; see the module docstring for what it drops."""

    def __init__(
        self, *, rate: float, burst: float, max_sources: int, clock: Clock, software: str = SOFTWARE
    ) -> None:
        self._limiter = RateLimiter(rate, burst, clock, max_keys=max_sources)
        self._software = software
        self._transport: asyncio.DatagramTransport | None = None
        self.counters = StunCounters()

    @property
    def tracked_sources(self) -> int:
        """Source addresses in the rate-limit table (never above ``max_sources``)."""
        return len(self._limiter)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from earlier answers (port unreachable): nothing to do.
        log.debug("STUN socket error: %s", exc)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        answer = self.answer(data, (str(addr[0]), int(addr[1])))
        if answer is not None and self._transport is not None:
            self._transport.sendto(answer, addr)

    def answer(self, data: bytes, source: Address) -> bytes | None:
        """The bytes to send back to ``source`` for ``data``, or None to stay silent."""
        counters = self.counters
        if not is_stun(data) or data[1] & 0x10 or data[0] & 0x01:
            counters.ignored += 1  # not STUN, or not of class request
            return None
        host = _unmapped(source[0])
        if self._limiter.hit(_source_key(host)) > 0:
            counters.limited += 1
            return None
        try:
            request = parse_message(data)
        except StunError:
            counters.ignored += 1
            return None
        if request.method != Method.BINDING or request.cls is not StunClass.REQUEST:
            counters.ignored += 1
            return None
        unknown = request.unknown_comprehension_required()
        if unknown:
            counters.rejected += 1
            return binding_error(
                request.transaction_id,
                420,
                "Unknown Attribute",
                unknown=unknown,
                software=self._software,
            )
        counters.answered += 1
        return binding_success(request.transaction_id, (host, source[1]), software=self._software)


def _unmapped(host: str) -> str:
    """An IPv4 client seen through a dual-stack socket (::ffff:a.b.c.d) is reported as IPv4."""
    if not host.startswith("::ffff:"):
        return host
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return host


def _source_key(host: str) -> str:
    """The rate-limit key: the IPv4 address, or the /64 an IPv6 address is in."""
    if ":" not in host:
        return host
    try:
        return str(ipaddress.IPv6Network((host.split("%", 1)[0], 64), strict=False))
    except ValueError:
        return host


class StunServer:
    """A bound :class:`StunResponder`: ``await start()``, ``port``, ``await close()``."""

    def __init__(self, responder: StunResponder) -> None:
        self.responder = responder
        self._transport: asyncio.DatagramTransport | None = None
        self._port: int | None = None

    @classmethod
    def from_settings(cls, settings: LobbySettings, clock: Clock) -> StunServer:
        """A server with the ``stun_*`` limits of ``settings`` (not started)."""
        return cls(
            StunResponder(
                rate=settings.stun_rate_per_address,
                burst=settings.stun_burst_per_address,
                max_sources=settings.stun_max_addresses,
                clock=clock,
            )
        )

    @property
    def port(self) -> int:
        """The bound UDP port (the real one when started with port 0)."""
        if self._port is None:
            raise LobbyError("the STUN responder is not started")
        return self._port

    async def start(self, host: str, port: int) -> int:
        """Bind ``host``:``port`` (UDP); return the port. Raises :class:`LobbyError`."""
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: self.responder, local_addr=(host, port)
            )
        except OSError as exc:
            raise LobbyError(f"cannot bind the STUN port {host}:{port} (UDP): {exc}") from exc
        self._transport = transport
        self._port = int(transport.get_extra_info("sockname")[1])
        log.info("STUN responder on %s:%d (UDP)", host, self._port)
        return self._port

    async def close(self) -> None:
        """Stop answering (idempotent)."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._port = None
