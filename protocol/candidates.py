"""Connectivity candidates: the typed addresses a peer node can be reached at (ICE-style).

A node registers its candidates with the lobby at select; the lobby hands them
only to the peers it pairs with that node (``PEER_INFO.candidates``). Kinds, as
in ICE (RFC 8445):

* ``host``: an address bound on the node's own interface;
* ``srflx`` (server-reflexive): the address a STUN server saw the node's mesh
  socket come from (its NAT mapping);
* ``relay``: an address allocated for the node on a TURN server.

``priority`` follows RFC 8445 section 5.1.2.1 (:func:`candidate_priority`):
higher is tried first. ``address`` is always an IP literal (never a hostname:
a name could point anywhere, and the lobby would hand it out unchecked).

Two levels of checking: the model checks the shape (kind, IP literal, port,
priority range) wherever a candidate is read; :func:`check_candidate` applies
the address policy a lobby enforces on what it hands out (no unspecified,
multicast, broadcast or link-local address; loopback only when the caller
allows it, i.e. a lobby that itself runs on loopback for development).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict

__all__ = [
    "ADDRESS_PATTERN",
    "IP_ENDPOINT_PATTERN",
    "MAX_CANDIDATES",
    "TYPE_PREFERENCE",
    "Candidate",
    "CandidateKind",
    "PairingReason",
    "candidate_priority",
    "check_candidate",
    "check_candidates",
    "endpoint_candidate",
    "parse_ip_endpoint",
    "sorted_candidates",
]

MAX_CANDIDATES = 16
"""Most candidates one node registers (and one ``PEER_INFO`` carries)."""

_MAX_PRIORITY = 2**31 - 1

_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_V4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H = "[0-9A-Fa-f]{1,4}"
_V6 = "|".join(
    (
        f"(?:{_H}:){{7}}{_H}",
        f"(?:{_H}:){{1,7}}:",
        f"(?:{_H}:){{1,6}}:{_H}",
        f"(?:{_H}:){{1,5}}(?::{_H}){{1,2}}",
        f"(?:{_H}:){{1,4}}(?::{_H}){{1,3}}",
        f"(?:{_H}:){{1,3}}(?::{_H}){{1,4}}",
        f"(?:{_H}:){{1,2}}(?::{_H}){{1,5}}",
        f"{_H}:(?::{_H}){{1,6}}",
        f":(?:(?::{_H}){{1,7}}|:)",
    )
)
_PORT = "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
ADDRESS_PATTERN = rf"^(?:{_V4}|{_V6})$"
"""An IPv4 (dotted quad, no leading zeros) or IPv6 (hex groups, no zone) literal."""
IP_ENDPOINT_PATTERN = rf"^(?:{_V4}|\[(?:{_V6})\]):{_PORT}$"
"""``a.b.c.d:port`` or ``[v6]:port``: an address, never a name."""


class CandidateKind(StrEnum):
    """How a candidate address was learned (ICE candidate types)."""

    HOST = "host"
    SRFLX = "srflx"
    RELAY = "relay"


class PairingReason(StrEnum):
    """Why the lobby paired two peers (and so handed each the other's candidates)."""

    LOCATION = "location"
    PARTY = "party"
    WHISPER = "whisper"


TYPE_PREFERENCE: dict[CandidateKind, int] = {
    CandidateKind.HOST: 126,
    CandidateKind.SRFLX: 100,
    CandidateKind.RELAY: 0,
}
"""RFC 8445's recommended type preferences (0..126)."""


def candidate_priority(
    kind: CandidateKind, *, local_preference: int = 65535, component: int = 1
) -> int:
    """``2^24 * type_pref + 2^8 * local_pref + (256 - component)`` (RFC 8445 5.1.2.1)."""
    if not 0 <= local_preference <= 65535:
        raise ValueError("local_preference must be 0..65535")
    if not 1 <= component <= 256:
        raise ValueError("component must be 1..256")
    return (TYPE_PREFERENCE[kind] << 24) + (local_preference << 8) + (256 - component)


def _ip_literal(value: str) -> str:
    try:
        parsed = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("address must be an IPv4 or IPv6 literal") from None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.scope_id:
        raise ValueError("address must not carry an IPv6 zone")
    return parsed.compressed


_Address = Annotated[
    str,
    Strict(),
    Field(min_length=2, max_length=39, pattern=ADDRESS_PATTERN),
    AfterValidator(_ip_literal),
]


def _integral(value: object) -> object:
    # JSON Schema's "integer" admits 4000.0; a string or a boolean stays refused (strict)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_Integer = Annotated[int, BeforeValidator(_integral), Strict()]


class Candidate(BaseModel):
    """One address a node can be reached at.

    ``host``: bound on the node's interface; ``srflx``: its NAT mapping, learned
    by STUN from its mesh socket; ``relay``: allocated for it on a TURN server.
    Higher ``priority`` is tried first (RFC 8445).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: CandidateKind
    address: _Address = Field(description="IPv4 or IPv6 literal (canonical form)")
    port: _Integer = Field(ge=1, le=65535)
    priority: _Integer = Field(ge=0, le=_MAX_PRIORITY, description="RFC 8445; higher first")

    @property
    def endpoint(self) -> str:
        """``host:port`` (``[v6]:port`` for IPv6)."""
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.address)


def parse_ip_endpoint(text: str) -> tuple[str, int]:
    """``"a.b.c.d:port"`` or ``"[v6]:port"`` -> ``(address, port)``; ``ValueError`` otherwise.

    Hostnames are refused: a candidate is an address.
    """
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise ValueError(f"endpoint {text[:64]!r} is not address:port")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"endpoint {text[:64]!r}: port must be 1..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(f"endpoint {text[:64]!r}: brackets are for IPv6 only")
    elif ":" in host:
        raise ValueError(f"endpoint {text[:64]!r}: an IPv6 address needs [brackets]")
    return _ip_literal(host), port


def endpoint_candidate(
    text: str, kind: CandidateKind = CandidateKind.HOST, *, local_preference: int = 65535
) -> Candidate:
    """A candidate from a ``host:port`` endpoint string (``ValueError`` when not an address)."""
    address, port = parse_ip_endpoint(text)
    return Candidate(
        kind=kind,
        address=address,
        port=port,
        priority=candidate_priority(kind, local_preference=local_preference),
    )


def check_candidate(candidate: Candidate, *, allow_loopback: bool) -> None:
    """Raise ``ValueError`` unless a lobby may hand ``candidate`` to other peers.

    Refused: unspecified (``0.0.0.0``, ``::``), multicast, broadcast, link-local
    (needs an interface to mean anything), reserved, and loopback unless
    ``allow_loopback``. An IPv4-mapped IPv6 address is judged as its IPv4 one.
    """
    ip = candidate.ip
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    shown = candidate.endpoint
    if ip.is_unspecified:
        raise ValueError(f"candidate {shown}: an unspecified address reaches no one")
    if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"candidate {shown}: multicast and broadcast are not peer addresses")
    if ip.is_loopback:
        if not allow_loopback:
            raise ValueError(f"candidate {shown}: loopback is only for a lobby on loopback")
        return
    if ip.is_link_local:
        raise ValueError(f"candidate {shown}: a link-local address is not routable")
    if ip.is_reserved:
        raise ValueError(f"candidate {shown}: a reserved address is not a peer address")


def check_candidates(candidates: Iterable[Candidate], *, allow_loopback: bool) -> list[Candidate]:
    """Every candidate checked (:func:`check_candidate`), duplicates dropped, best first.

    Raises ``ValueError`` for the first refused candidate or more than
    :data:`MAX_CANDIDATES` distinct ones. Two candidates are duplicates when
    they share kind, address and port (the higher priority is kept).
    """
    best: dict[tuple[CandidateKind, str, int], Candidate] = {}
    for candidate in candidates:
        check_candidate(candidate, allow_loopback=allow_loopback)
        key = (candidate.kind, candidate.address, candidate.port)
        kept = best.get(key)
        if kept is None or candidate.priority > kept.priority:
            best[key] = candidate
    if len(best) > MAX_CANDIDATES:
        raise ValueError(f"at most {MAX_CANDIDATES} candidates")
    return sorted_candidates(best.values())


def sorted_candidates(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Highest priority first; ties in a stable order (kind, address, port)."""
    return sorted(candidates, key=lambda c: (-c.priority, c.kind.value, c.address, c.port))
