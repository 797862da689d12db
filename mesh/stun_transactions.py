"""STUN client transactions over UDP: RFC 8489 retransmission, sans I/O.

:class:`Transactions` keeps the requests in flight of one client (the STUN
Binding client, the TURN client): when each must be sent again, and when it has
failed. A request is sent, then resent after ``rto``, ``2 rto``, ``4 rto``, ... up
to ``max_transmissions`` sends in all (Rc); the transaction fails ``final_wait``
x ``rto`` (Rm) after the last send. With RFC 8489's defaults (500 ms, 7, 16)
that is 39.5 s. No clock is read: every call takes ``now``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from protocol.errors import MeshError
from protocol.stun import Address

__all__ = [
    "RFC_FINAL_WAIT",
    "RFC_MAX_TRANSMISSIONS",
    "RFC_RTO",
    "Retransmission",
    "Transaction",
    "Transactions",
]

RFC_RTO = 0.5
RFC_MAX_TRANSMISSIONS = 7  # Rc
RFC_FINAL_WAIT = 16.0  # Rm

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Retransmission:
    """The retransmission policy: initial RTO, sends in all, and the last wait in RTOs."""

    rto: float = RFC_RTO
    max_transmissions: int = RFC_MAX_TRANSMISSIONS
    final_wait: float = RFC_FINAL_WAIT

    def __post_init__(self) -> None:
        if self.rto <= 0 or self.max_transmissions < 1 or self.final_wait <= 0:
            raise MeshError("STUN retransmission: rto and final_wait > 0, transmissions >= 1")


@dataclass(slots=True)
class Transaction(Generic[T]):
    """One request in flight; ``context`` is what the owner needs to finish it."""

    transaction_id: bytes
    destination: Address
    request: bytes
    context: T
    first_sent: float
    next_at: float
    interval: float
    transmissions: int = 1

    @property
    def retransmitted(self) -> bool:
        return self.transmissions > 1


@dataclass(slots=True)
class Transactions(Generic[T]):
    """The transactions in flight of one client, at most ``max_pending`` of them."""

    policy: Retransmission = field(default_factory=Retransmission)
    max_pending: int = 16
    _pending: dict[bytes, Transaction[T]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[Transaction[T]]:
        return iter(list(self._pending.values()))

    def start(
        self, transaction_id: bytes, destination: Address, request: bytes, context: T, now: float
    ) -> Transaction[T]:
        """Track a request the caller sends now; :class:`MeshError` past ``max_pending``."""
        if len(self._pending) >= self.max_pending:
            raise MeshError(f"too many STUN transactions in flight ({self.max_pending})")
        rto = self.policy.rto
        tx = Transaction(transaction_id, destination, request, context, now, now + rto, rto)
        self._pending[transaction_id] = tx
        return tx

    def get(self, transaction_id: bytes, source: Address) -> Transaction[T] | None:
        """The transaction ``transaction_id`` if its request went to ``source``, else None."""
        tx = self._pending.get(transaction_id)
        if tx is None or not same_address(tx.destination, source):
            return None
        return tx

    def finish(self, transaction_id: bytes) -> None:
        self._pending.pop(transaction_id, None)

    def next_at(self) -> float | None:
        """When :meth:`due` has work next, or None with nothing in flight."""
        if not self._pending:  # the usual answer: the node asks on every flush
            return None
        return min((tx.next_at for tx in self._pending.values()), default=None)

    def due(self, now: float) -> tuple[list[Transaction[T]], list[Transaction[T]]]:
        """(to send again now, failed and removed) at ``now``."""
        resend: list[Transaction[T]] = []
        failed: list[Transaction[T]] = []
        policy = self.policy
        for transaction_id, tx in list(self._pending.items()):
            if tx.next_at > now:
                continue
            if tx.transmissions >= policy.max_transmissions:
                del self._pending[transaction_id]
                failed.append(tx)
                continue
            tx.transmissions += 1
            tx.interval *= 2
            last = tx.transmissions >= policy.max_transmissions
            tx.next_at = now + (policy.rto * policy.final_wait if last else tx.interval)
            resend.append(tx)
        return resend, failed


def same_address(expected: Address, source: Address) -> bool:
    """``source`` is ``expected`` (an IPv4 server seen through a dual-stack socket counts)."""
    if expected == source:
        return True
    host = source[0]
    return host.startswith("::ffff:") and (host[7:], source[1]) == expected
