"""A sans-I/O STUN Binding client: learn the node's server-reflexive address.

The node sends STUN Binding requests (RFC 8489) from its one mesh UDP socket to
one or more STUN servers (the lobby answers them itself) and learns from the
answers how the internet sees that socket. This module owns no socket, reads no
clock and needs no event loop; the socket driver calls it, in aioquic's style:

- :meth:`StunClient.request` starts a transaction to a server;
- :meth:`StunClient.datagrams_to_send` returns what to send now, and to whom;
- :meth:`StunClient.receive_datagram` takes a datagram the demultiplexer
  classified as STUN (:func:`protocol.stun.classify_datagram`) and says whether
  it answered one of our transactions;
- :meth:`StunClient.get_timer` / :meth:`StunClient.handle_timer` drive
  retransmissions;
- :meth:`StunClient.next_event` yields :class:`BindingSucceeded` and
  :class:`BindingFailed`.

Retransmission follows RFC 8489 section 6.2.1: the request is sent, then resent
after ``rto``, ``2 rto``, ``4 rto``, ... up to ``max_transmissions`` sends in
all; the transaction fails ``final_wait`` x ``rto`` after the last one. With the
RFC defaults (500 ms, 7 sends, 16) that is 39.5 s; a game wants an answer
sooner and passes smaller values. An answer is accepted only from the address
the request went to, with our transaction id; everything else is left to the
caller (``receive_datagram`` returns False). The round-trip time is reported
only for transactions sent once (Karn's rule: an answer to a retransmitted
request cannot be matched to one send).

:meth:`StunClient.mapping_behaviour` compares the mappings two or more servers
reported: the same address from every server means endpoint-independent mapping
(hole punching can work); different ones mean a symmetric NAT (go to TURN).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from protocol.errors import MeshError, StunError
from protocol.stun import (
    Address,
    Method,
    StunClass,
    StunMessage,
    binding_request,
    new_transaction_id,
    parse_message,
)

__all__ = [
    "BindingFailed",
    "BindingSucceeded",
    "MappingBehaviour",
    "StunClient",
    "StunEvent",
]

RFC_RTO = 0.5
RFC_MAX_TRANSMISSIONS = 7  # Rc
RFC_FINAL_WAIT = 16  # Rm


@dataclass(frozen=True, slots=True)
class BindingSucceeded:
    """``server`` saw our socket as ``mapped`` (the server-reflexive address)."""

    server: Address
    transaction_id: bytes
    mapped: Address
    rtt: float | None  # None when the request was retransmitted


@dataclass(frozen=True, slots=True)
class BindingFailed:
    """No usable answer from ``server``: ``reason`` says why (timeout, error code, ...)."""

    server: Address
    transaction_id: bytes
    reason: str
    error_code: int | None = None


StunEvent = BindingSucceeded | BindingFailed


class MappingBehaviour(Enum):
    """What the mappings reported by several STUN servers say about the NAT."""

    UNKNOWN = "unknown"  # fewer than two servers answered
    ENDPOINT_INDEPENDENT = "endpoint-independent"  # one mapping for every destination
    ENDPOINT_DEPENDENT = "endpoint-dependent"  # a new mapping per destination (symmetric)


@dataclass(slots=True)
class _Transaction:
    server: Address
    request: bytes
    first_sent: float
    next_at: float
    interval: float
    transmissions: int = 1


@dataclass(slots=True)
class StunClient:
    """STUN Binding transactions of one UDP socket (see the module docstring).

    ``max_pending`` bounds the transactions in flight; :meth:`request` raises
    :class:`~protocol.errors.MeshError` beyond it.
    """

    rto: float = RFC_RTO
    max_transmissions: int = RFC_MAX_TRANSMISSIONS
    final_wait: float = RFC_FINAL_WAIT
    max_pending: int = 16
    software: str | None = None
    new_id: Callable[[], bytes] = new_transaction_id
    _pending: dict[bytes, _Transaction] = field(default_factory=dict)
    _outbox: list[tuple[bytes, Address]] = field(default_factory=list)
    _events: deque[StunEvent] = field(default_factory=deque)
    _mapped: dict[Address, Address] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rto <= 0 or self.max_transmissions < 1 or self.final_wait <= 0:
            raise MeshError("STUN client: rto and final_wait must be > 0, transmissions >= 1")

    # -- driving ----------------------------------------------------------------------

    def request(self, server: Address, now: float) -> bytes:
        """Start a Binding transaction to ``server``; return its transaction id."""
        if len(self._pending) >= self.max_pending:
            raise MeshError(f"too many STUN transactions in flight ({self.max_pending})")
        transaction_id = self.new_id()
        request = binding_request(transaction_id, software=self.software)
        self._pending[transaction_id] = _Transaction(server, request, now, now + self.rto, self.rto)
        self._outbox.append((request, server))
        return transaction_id

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """What to send now: (datagram, destination) pairs, oldest first."""
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` wants to run next, or None with nothing in flight."""
        return min((t.next_at for t in self._pending.values()), default=None)

    def handle_timer(self, now: float) -> None:
        """Retransmit what is due; fail transactions whose last wait is over."""
        for transaction_id, tx in list(self._pending.items()):
            if tx.next_at > now:
                continue
            if tx.transmissions >= self.max_transmissions:
                del self._pending[transaction_id]
                sends = tx.transmissions
                self._events.append(
                    BindingFailed(tx.server, transaction_id, f"no answer after {sends} sends")
                )
                continue
            tx.transmissions += 1
            tx.interval *= 2
            last = tx.transmissions >= self.max_transmissions
            tx.next_at = now + (self.rto * self.final_wait if last else tx.interval)
            self._outbox.append((tx.request, tx.server))

    def receive_datagram(self, data: bytes, source: Address, now: float) -> bool:
        """Take a datagram; True if it answered one of our transactions (then consumed).

        A malformed datagram, a request, or an answer from another address or to
        an unknown transaction returns False and changes nothing.
        """
        if len(data) < 20:
            return False
        tx = self._pending.get(bytes(data[8:20]))
        if tx is None or not _same_address(tx.server, source):
            return False
        try:
            message = parse_message(data)
        except StunError:
            return False
        if message.method != Method.BINDING or message.cls not in (
            StunClass.SUCCESS,
            StunClass.ERROR,
        ):
            return False
        transaction_id = message.transaction_id
        del self._pending[transaction_id]
        self._events.append(self._outcome(tx, message, now))
        return True

    def next_event(self) -> StunEvent | None:
        """The next outcome, or None."""
        return self._events.popleft() if self._events else None

    # -- what was learned ---------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Transactions in flight."""
        return len(self._pending)

    def mapped_address(self, server: Address | None = None) -> Address | None:
        """The last server-reflexive address ``server`` (any, when None) reported."""
        if server is not None:
            return self._mapped.get(server)
        return next(reversed(self._mapped.values()), None)

    def mapping_behaviour(self) -> MappingBehaviour:
        """Endpoint-independent when every server reported the same mapping."""
        if len(self._mapped) < 2:
            return MappingBehaviour.UNKNOWN
        if len(set(self._mapped.values())) == 1:
            return MappingBehaviour.ENDPOINT_INDEPENDENT
        return MappingBehaviour.ENDPOINT_DEPENDENT

    def _outcome(self, tx: _Transaction, message: StunMessage, now: float) -> StunEvent:
        transaction_id = message.transaction_id
        try:
            if message.cls is StunClass.ERROR:
                error = message.error_code()
                code, reason = error if error is not None else (None, "error without ERROR-CODE")
                return BindingFailed(tx.server, transaction_id, f"{code} {reason}", code)
            mapped = message.xor_mapped_address() or message.mapped_address()
        except StunError as exc:
            return BindingFailed(tx.server, transaction_id, f"malformed answer: {exc}")
        if mapped is None:
            return BindingFailed(tx.server, transaction_id, "answer without a mapped address")
        self._mapped.pop(tx.server, None)
        self._mapped[tx.server] = mapped
        rtt = now - tx.first_sent if tx.transmissions == 1 else None
        return BindingSucceeded(tx.server, transaction_id, mapped, rtt)


def _same_address(expected: Address, source: Address) -> bool:
    """``source`` is ``expected`` (an IPv4 server seen through a dual-stack socket counts)."""
    if expected == source:
        return True
    host = source[0]
    return host.startswith("::ffff:") and (host[7:], source[1]) == expected
