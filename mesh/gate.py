"""Admission of new inbound QUIC connections: admit, retry or drop an Initial (sans-I/O).

A node allocates a connection (TLS state, a handshake slot held up to
``dial_timeout``) for a client Initial whose destination connection id it does
not know. Without a check in front, anyone can fill those slots with datagrams
whose source address is forged. :class:`InitialGate` decides, before anything
is allocated, what happens to such an Initial:

* :class:`Drop` what cannot open a mesh connection, at the cost of a header
  parse: not an Initial, a datagram under 1,200 bytes, a QUIC version the node
  does not speak, a first destination connection id under 8 bytes (RFC 9000
  7.2), a token that is not a valid Retry token of this gate (the only tokens a
  mesh client sends), a source over its limit, and
  everything once ``max_handshakes`` connections are handshaking. The ALPN is
  not checked here: it sits in the encrypted ClientHello, and reading it costs
  what the connection would (the core refuses a wrong one after TLS).
* :class:`Retry` (stateless address validation, RFC 9000 8.1.2) while the node
  is under pressure: ``retry_threshold`` or more connections are handshaking, or
  ``max_handshakes_per_source`` connections the source opened without a token
  are still handshaking. The gate queues a Retry packet carrying a
  token: an HMAC (key random per gate) over the source address, the original
  destination connection id, the Retry's source connection id and the time. A
  QUIC client (aioquic's included) answers it with a new Initial carrying the
  token; a forged source never sees the Retry, so it never gets past this.
  Nothing is kept per Retry. A Retry is about a tenth of the Initial that
  caused it, so it amplifies nothing.
* :class:`Admit` the rest. An Initial with a valid token is admitted even under
  pressure (its source address is proven), while fewer than
  ``max_handshakes_per_source`` validated connections from its source are
  handshaking. Handshakes without a token are counted apart: a forged flood in a
  victim's name only pushes the victim's peers through a Retry, it never locks
  them out.

Per-source counts are of connections still handshaking (the caller's
``in_progress`` answers for each connection the gate admitted): a handshake that
is done, or failed, frees its source's place at once, so many honest peers
behind one address connect one after the other. A source is an IPv4 address or
an IPv6 /64; the table keeps at most ``gate_sources`` of them (the least recently
admitted goes first: an evicted source starts from zero, the global limits
still hold).

The gate reads no clock and opens no socket: ``now`` is passed in, and the Retry
packets wait in :meth:`InitialGate.datagrams_to_send` for the driver. Every
:class:`Admit` is counted against its source until ``in_progress`` says otherwise:
the caller must then open the connection, reachable by the Initial's destination
id, with :attr:`Admit.original_dcid` and :attr:`Admit.retry_scid` (aioquic's
``original_destination_connection_id`` and ``retry_source_connection_id``).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import logging
import os
import struct
from collections import OrderedDict, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from aioquic.quic.packet import QuicHeader, QuicPacketType, encode_quic_retry

from mesh.config import MeshConfig
from mesh.paths import Route, TurnRoute, route_address
from protocol.errors import ErrorCode, MeshError

__all__ = [
    "MIN_INITIAL_DATAGRAM",
    "MIN_ORIGINAL_CID",
    "Admit",
    "Drop",
    "InitialGate",
    "Refusal",
    "Retry",
    "RetryTokens",
    "Verdict",
    "source_key",
]

logger = logging.getLogger("mesh.gate")

MIN_INITIAL_DATAGRAM = 1200
"""A client Initial travels in a datagram of at least this many bytes (RFC 9000 14.1)."""
MIN_ORIGINAL_CID = 8
"""A client's first destination connection id is at least this long (RFC 9000 7.2)."""
_MAX_CID = 20
_MAX_QUEUED = 256  # Retry packets waiting for the driver; it flushes after every datagram
_PRESSURE_LOG_INTERVAL = 60.0


class Refusal(enum.Enum):
    """Why an Initial was dropped (the suffix of its ``gate_refused_*`` counter)."""

    NOT_INITIAL = "not_initial"
    TOO_SMALL = "too_small"
    UNSUPPORTED_VERSION = "unsupported_version"
    SHORT_CID = "short_cid"
    BAD_RETRY = "bad_retry_token"
    SOURCE_LIMIT = "source_limit"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class Admit:
    """Open a server connection for this Initial.

    ``original_dcid``: the destination connection id of the client's first
    Initial; ``retry_scid``: the source connection id of our Retry when the
    address was validated by one (None otherwise).
    """

    original_dcid: bytes
    retry_scid: bytes | None = None

    @property
    def validated(self) -> bool:
        """True when the source address answered a Retry."""
        return self.retry_scid is not None


@dataclass(frozen=True, slots=True)
class Retry:
    """A Retry answers the Initial (``source_cid`` is its source connection id); nothing is
    kept. It waits in :meth:`InitialGate.datagrams_to_send`, unless 256 already wait there
    (counted in ``gate_retries_unsent``: the client's next Initial gets one)."""

    source_cid: bytes


@dataclass(frozen=True, slots=True)
class Drop:
    """Ignore the datagram."""

    reason: Refusal


Verdict = Admit | Retry | Drop
"""What :meth:`InitialGate.screen` decides for one Initial."""


def source_key(addr: Route) -> str:
    """The unit per-source limits count in: an IPv4 address or an IPv6 /64 network (of
    the peer's address as our TURN server sees it, for a relayed Initial)."""
    host = str(route_address(addr)[0])
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RetryTokens:
    """Mints and checks Retry tokens: stateless, bound to one source and one Retry.

    Layout: version (1 byte), issue time (IEEE double, in the caller's ``now``
    clock), original destination connection id (1-byte length, then the id),
    then a 16-byte HMAC-SHA256 tag over all that, the Retry's source connection
    id and the source address (host and port). Only the node that minted a token
    can check it: ``now`` may be a monotonic clock.
    """

    VERSION = 1
    TAG_SIZE = 16
    _HEAD = struct.Struct("!BdB")

    def __init__(self, key: bytes, lifetime: float) -> None:
        if len(key) < 16:
            raise MeshError("a Retry token key needs at least 16 bytes", code=ErrorCode.BAD_REQUEST)
        self._key = key
        self.lifetime = lifetime

    def mint(self, addr: Route, original_dcid: bytes, retry_scid: bytes, now: float) -> bytes:
        """A token for a Retry sent to ``addr`` from ``retry_scid``, answering ``original_dcid``."""
        body = self._HEAD.pack(self.VERSION, now, len(original_dcid)) + original_dcid
        return body + self._tag(body, retry_scid, addr)

    def check(self, token: bytes, addr: Route, dcid: bytes, now: float) -> bytes | None:
        """The original destination connection id if ``token`` is valid for an Initial
        from ``addr`` to ``dcid`` at ``now`` (issued at most ``lifetime`` ago), else None."""
        head = self._HEAD.size
        if len(token) < head + MIN_ORIGINAL_CID + self.TAG_SIZE:
            return None
        version, issued, odcid_len = self._HEAD.unpack_from(token)
        if version != self.VERSION or len(token) != head + odcid_len + self.TAG_SIZE:
            return None
        body, tag = token[: head + odcid_len], token[head + odcid_len :]
        if not hmac.compare_digest(tag, self._tag(body, dcid, addr)):
            return None
        if not 0.0 <= now - issued <= self.lifetime:  # NaN fails too
            return None
        return body[head:]

    def _tag(self, body: bytes, retry_scid: bytes, addr: Route) -> bytes:
        peer = route_address(addr)
        # a relayed source is another source than the same address reached directly
        host = (b"turn:" if isinstance(addr, TurnRoute) else b"") + str(peer[0]).encode()
        message = b"".join(
            (
                b"shards-retry",
                body,
                bytes((len(retry_scid),)),
                retry_scid,
                struct.pack("!HH", len(host), int(peer[1]) & 0xFFFF),
                host,
            )
        )
        return hmac.new(self._key, message, hashlib.sha256).digest()[: self.TAG_SIZE]


@dataclass(slots=True)
class _Admitted:
    unvalidated: list[bytes] = field(default_factory=list)
    validated: list[bytes] = field(default_factory=list)


class _Sources:
    """The connection ids admitted per source that are still handshaking, for at most
    ``capacity`` sources (least recently admitted evicted)."""

    def __init__(self, capacity: int, in_progress: Callable[[bytes], bool]) -> None:
        self._capacity = capacity
        self._in_progress = in_progress
        self._table: OrderedDict[str, _Admitted] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def count(self, key: str, *, validated: bool) -> int:
        entry = self._table.get(key)
        if entry is None:
            return 0
        cids = entry.validated if validated else entry.unvalidated
        cids[:] = [cid for cid in cids if self._in_progress(cid)]
        if not entry.validated and not entry.unvalidated:
            del self._table[key]
        return len(cids)

    def add(self, key: str, cid: bytes, *, validated: bool) -> None:
        entry = self._table.get(key)
        if entry is None:
            entry = self._table[key] = _Admitted()
            if len(self._table) > self._capacity:
                self._table.popitem(last=False)
        else:
            self._table.move_to_end(key)
        (entry.validated if validated else entry.unvalidated).append(cid)


class InitialGate:
    """Decides admit / retry / drop for each Initial to an unknown connection id.

    ``config``: the node's :class:`~mesh.config.MeshConfig` (``max_handshakes``,
    ``retry_threshold``, ``max_handshakes_per_source``, ``retry_token_lifetime``,
    ``gate_sources``, ``connection_id_length``); ``versions``: the QUIC versions the
    node's server speaks; ``in_progress(dcid)``: whether the connection opened for an
    admitted Initial to ``dcid`` is still handshaking (False once it is authenticated
    or gone); ``key``: the token key (random by default: tokens die with the gate);
    ``random``: the source of Retry connection ids (``os.urandom``). Raises
    :class:`MeshError` (``BAD_REQUEST``) for unusable settings. ``stats`` counts every
    decision.
    """

    def __init__(
        self,
        config: MeshConfig,
        *,
        versions: Collection[int],
        in_progress: Callable[[bytes], bool],
        key: bytes | None = None,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        _check_config(config)
        self._max_handshakes = config.max_handshakes
        self._retry_threshold = config.retry_threshold
        self._per_source = config.max_handshakes_per_source
        self._cid_length = config.connection_id_length
        self._versions = frozenset(versions)
        self._random = random
        self._tokens = RetryTokens(
            key if key is not None else os.urandom(32), config.retry_token_lifetime
        )
        self._sources = _Sources(config.gate_sources, in_progress)
        self.outbox: deque[tuple[bytes, Route]] = deque()
        """The Retry packets waiting for :meth:`datagrams_to_send`, with destinations. Read
        it, never change it: a flush skips that call while it is empty (it is, but under
        pressure)."""
        self._pressure_logged_at: float | None = None
        self.stats: dict[str, int] = {
            "gate_admitted": 0,
            "gate_admitted_after_retry": 0,
            "gate_retries": 0,
            "gate_retries_unsent": 0,
            **{f"gate_refused_{reason.value}": 0 for reason in Refusal},
        }

    @property
    def sources(self) -> int:
        """How many sources the per-source table holds now."""
        return len(self._sources)

    def screen(
        self, header: QuicHeader, size: int, addr: Route, now: float, *, handshakes: int
    ) -> Verdict:
        """Decide for one datagram to an unknown connection id (see the module docstring).

        ``header``: its first packet's header; ``size``: the datagram's length;
        ``addr``: its source; ``handshakes``: connections handshaking now, ours included.
        """
        if header.packet_type != QuicPacketType.INITIAL:
            return self._drop(Refusal.NOT_INITIAL)
        if size < MIN_INITIAL_DATAGRAM:
            return self._drop(Refusal.TOO_SMALL)
        version = header.version
        if version is None or version not in self._versions:
            return self._drop(Refusal.UNSUPPORTED_VERSION)
        if handshakes >= self._max_handshakes:
            return self._drop(Refusal.FULL)
        dcid = header.destination_cid
        if header.token:
            # our Retry's source connection id is what the client sends to now
            if len(dcid) != self._cid_length:
                return self._drop(Refusal.BAD_RETRY)
            original = self._tokens.check(header.token, addr, dcid, now)
            if original is None:
                return self._drop(Refusal.BAD_RETRY)
            return self._admit(source_key(addr), dcid, Admit(original, dcid))
        if len(dcid) < MIN_ORIGINAL_CID:
            return self._drop(Refusal.SHORT_CID)
        if handshakes >= self._retry_threshold:
            return self._retry(header, version, addr, now, "handshake slots under pressure")
        key = source_key(addr)
        if self._sources.count(key, validated=False) >= self._per_source:
            return self._retry(header, version, addr, now, f"{key} has many handshakes open")
        return self._admit(key, dcid, Admit(dcid))

    def datagrams_to_send(self) -> list[tuple[bytes, Route]]:
        """The Retry packets queued since the last call, with their destinations."""
        out = list(self.outbox)
        self.outbox.clear()
        return out

    # decisions ----------------------------------------------------------------------

    def _drop(self, reason: Refusal) -> Drop:
        self.stats[f"gate_refused_{reason.value}"] += 1
        return Drop(reason)

    def _admit(self, key: str, dcid: bytes, admit: Admit) -> Verdict:
        if admit.validated:
            if self._sources.count(key, validated=True) >= self._per_source:
                return self._drop(Refusal.SOURCE_LIMIT)
            self.stats["gate_admitted_after_retry"] += 1
        self._sources.add(key, dcid, validated=admit.validated)
        self.stats["gate_admitted"] += 1
        return admit

    def _retry(
        self, header: QuicHeader, version: int, addr: Route, now: float, why: str
    ) -> Verdict:
        scid = self._random(self._cid_length)
        while scid == header.destination_cid:  # the client ignores a Retry from its own DCID
            scid = self._random(self._cid_length)
        if len(self.outbox) >= _MAX_QUEUED:
            self.stats["gate_retries_unsent"] += 1
            return Retry(scid)
        packet = encode_quic_retry(
            version=version,
            source_cid=scid,
            destination_cid=header.source_cid,
            original_destination_cid=header.destination_cid,
            retry_token=self._tokens.mint(addr, header.destination_cid, scid, now),
        )
        self.outbox.append((packet, addr))
        self.stats["gate_retries"] += 1
        last = self._pressure_logged_at
        if last is None or now - last >= _PRESSURE_LOG_INTERVAL:
            self._pressure_logged_at = now
            logger.info("%s: new connections must answer a QUIC Retry first", why)
        return Retry(scid)


def _check_config(config: MeshConfig) -> None:
    problems = []
    if config.max_handshakes < 1:
        problems.append("max_handshakes must be at least 1")
    if not 0 <= config.retry_threshold <= config.max_handshakes:
        problems.append("retry_threshold must be between 0 and max_handshakes")
    if config.max_handshakes_per_source < 1:
        problems.append("max_handshakes_per_source must be at least 1")
    if not config.retry_token_lifetime > 0:
        problems.append("retry_token_lifetime must be positive")
    if config.gate_sources < 1:
        problems.append("gate_sources must be at least 1")
    if not 1 <= config.connection_id_length <= _MAX_CID:
        problems.append(f"connection_id_length must be between 1 and {_MAX_CID}")
    if problems:
        raise MeshError("; ".join(problems), code=ErrorCode.BAD_REQUEST)
