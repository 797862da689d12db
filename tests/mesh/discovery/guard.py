"""Guard: no test may run mDNS (multicast) on a real host interface.

:func:`multicast_guard` wraps ``socket.socket.setsockopt``, ``bind`` and
``sendto`` for the duration of a test. Joining a multicast group on, choosing
as multicast interface, or binding port 5353 to any address outside
127.0.0.0/8 raises :class:`MulticastGuardError` *before* the call reaches the
kernel, so nothing is ever sent; so does sending to a multicast group from a
socket whose multicast interface was not set to loopback. The fixture also
fails the test at teardown if anything was caught (in case a library swallowed
the error). Processes started inside the test's own network namespaces are
outside the host's interfaces by construction and are not wrapped.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["MulticastGuardError", "multicast_guard"]

_MDNS_PORT = 5353


class MulticastGuardError(AssertionError):
    """A test tried to use multicast on a non-loopback interface."""


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@pytest.fixture
def multicast_guard() -> Iterator[list[str]]:
    """Fail the test on any multicast use outside loopback; yields the violations list."""
    violations: list[str] = []
    loopback_if: weakref.WeakSet[socket.socket] = weakref.WeakSet()
    real_setsockopt = socket.socket.setsockopt
    real_bind = socket.socket.bind
    real_sendto = socket.socket.sendto

    def violation(message: str) -> MulticastGuardError:
        violations.append(message)
        return MulticastGuardError(message)

    def setsockopt(self: socket.socket, level: int, option: int, *args: Any) -> None:
        value = args[0] if args else None
        if level == socket.IPPROTO_IP and option in (
            socket.IP_ADD_MEMBERSHIP,
            socket.IP_MULTICAST_IF,
        ):
            if not isinstance(value, bytes | bytearray):
                raise violation(f"multicast option {option} with a non-address value {value!r}")
            raw = bytes(value)
            # ip_mreq = group + interface; IP_MULTICAST_IF = interface (or an ip_mreqn)
            interface = raw[4:8] if option == socket.IP_ADD_MEMBERSHIP else raw[:4]
            if option == socket.IP_MULTICAST_IF and len(raw) >= 8:
                interface = raw[4:8]
            address = socket.inet_ntoa(interface)
            if not _loopback(address):
                raise violation(f"multicast on non-loopback interface {address}")
            if option == socket.IP_MULTICAST_IF:
                loopback_if.add(self)
        elif level == socket.IPPROTO_IPV6 and option in (
            socket.IPV6_JOIN_GROUP,
            socket.IPV6_MULTICAST_IF,
        ):
            index = struct.unpack("@I", bytes(value)[-4:])[0] if isinstance(value, bytes) else value
            if index != socket.if_nametoindex("lo"):
                raise violation(f"IPv6 multicast on interface index {index}")
        real_setsockopt(self, level, option, *args)

    def bind(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and len(address) >= 2 and address[1] == _MDNS_PORT:
            host = address[0]
            if host not in ("", "0.0.0.0", "::") and not _loopback(host):  # noqa: S104
                raise violation(f"mDNS socket bound to non-loopback {host}")
        real_bind(self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        address = args[-1]
        if isinstance(address, tuple) and address:
            try:
                multicast = ipaddress.ip_address(address[0]).is_multicast
            except ValueError:
                multicast = False
            if multicast and self not in loopback_if:
                raise violation(f"multicast to {address[0]} without a loopback interface")
        return real_sendto(self, data, *args)

    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "setsockopt", setsockopt)
    mp.setattr(socket.socket, "bind", bind)
    mp.setattr(socket.socket, "sendto", sendto)
    try:
        yield violations
    finally:
        mp.undo()
    assert not violations, f"multicast outside loopback attempted: {violations}"
