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

Retransmission follows RFC 8489 section 6.2.1 (:mod:`mesh.stun_transactions`):
with the RFC defaults a silent server fails a transaction after 39.5 s; a game
wants an answer sooner and passes a shorter :class:`Retransmission`. An answer
is accepted only from the address the request went to, with our transaction id;
everything else is left to the caller (``receive_datagram`` returns False). The
round-trip time is reported only for transactions sent once (Karn's rule: an
answer to a retransmitted request cannot be matched to one send).

:meth:`StunClient.mapping_behaviour` compares the mappings two or more servers
reported: the same address from every server means endpoint-independent mapping
(hole punching can work); different ones mean a symmetric NAT (go to TURN).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from mesh.stun_transactions import Retransmission, Transaction, Transactions
from protocol.errors import StunError
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
    "Retransmission",
    "StunClient",
    "StunEvent",
]


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


class StunClient:
    """STUN Binding transactions of one UDP socket (see the module docstring).

    ``retransmission`` is the RFC 8489 policy (:class:`Retransmission`);
    ``max_pending`` bounds the transactions in flight (:meth:`request` raises
    :class:`~protocol.errors.MeshError` beyond it).
    """

    def __init__(
        self,
        retransmission: Retransmission | None = None,
        *,
        max_pending: int = 16,
        software: str | None = None,
        new_id: Callable[[], bytes] = new_transaction_id,
    ) -> None:
        self._transactions: Transactions[None] = Transactions(
            retransmission or Retransmission(), max_pending
        )
        self.software = software
        self._new_id = new_id
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: deque[StunEvent] = deque()
        self._mapped: dict[Address, Address] = {}
        self.idle = True
        """Nothing to send, no transaction in flight, no event unread: flushing, timing and
        dispatching the client would find nothing. An attribute kept current by every
        method that changes those (the node reads it on every flush, so no call)."""
        self.on_idle_change: Callable[[], None] | None = None
        """Called after :attr:`idle` changed (:class:`mesh.demux.SocketClients` keeps its
        own ``idle`` current with it)."""

    # -- driving ----------------------------------------------------------------------

    def request(self, server: Address, now: float) -> bytes:
        """Start a Binding transaction to ``server``; return its transaction id."""
        transaction_id = self._new_id()
        request = binding_request(transaction_id, software=self.software)
        self._transactions.start(transaction_id, server, request, None, now)
        self._outbox.append((request, server))
        self._set_idle(False)
        return transaction_id

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """What to send now: (datagram, destination) pairs, oldest first."""
        out, self._outbox = self._outbox, []
        self._update_idle()
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` wants to run next, or None with nothing in flight."""
        return self._transactions.next_at()

    def handle_timer(self, now: float) -> None:
        """Retransmit what is due; fail transactions whose last wait is over."""
        resend, failed = self._transactions.due(now)
        self._outbox.extend((tx.request, tx.destination) for tx in resend)
        for tx in failed:
            reason = f"no answer after {tx.transmissions} sends"
            self._events.append(BindingFailed(tx.destination, tx.transaction_id, reason))
        self._update_idle()

    def receive_datagram(self, data: bytes, source: Address, now: float) -> bool:
        """Take a datagram; True if it answered one of our transactions (then consumed).

        A malformed datagram, a request, or an answer from another address or to
        an unknown transaction returns False and changes nothing.
        """
        if len(data) < 20:
            return False
        tx = self._transactions.get(bytes(data[8:20]), source)
        if tx is None:
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
        self._transactions.finish(tx.transaction_id)
        self._events.append(self._outcome(tx, message, now))
        self._set_idle(False)
        return True

    def next_event(self) -> StunEvent | None:
        """The next outcome, or None."""
        events = self._events
        if not events:
            return None
        event = events.popleft()
        if not events:
            self._update_idle()
        return event

    # -- what was learned ---------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Transactions in flight."""
        return len(self._transactions)

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

    def _update_idle(self) -> None:
        self._set_idle(not (self._outbox or self._events or self._transactions))

    def _set_idle(self, idle: bool) -> None:
        if idle is not self.idle:
            self.idle = idle
            if self.on_idle_change is not None:
                self.on_idle_change()

    def _outcome(self, tx: Transaction[None], message: StunMessage, now: float) -> StunEvent:
        transaction_id = message.transaction_id
        server = tx.destination
        try:
            if message.cls is StunClass.ERROR:
                error = message.error_code()
                code, reason = error if error is not None else (None, "error without ERROR-CODE")
                return BindingFailed(server, transaction_id, f"{code} {reason}", code)
            mapped = message.xor_mapped_address() or message.mapped_address()
        except StunError as exc:
            return BindingFailed(server, transaction_id, f"malformed answer: {exc}")
        if mapped is None:
            return BindingFailed(server, transaction_id, "answer without a mapped address")
        self._mapped.pop(server, None)
        self._mapped[server] = mapped
        rtt = None if tx.retransmitted else now - tx.first_sent
        return BindingSucceeded(server, transaction_id, mapped, rtt)
