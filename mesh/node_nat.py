"""The asyncio half of NAT traversal in :class:`mesh.node.PeerNode`: STUN/TURN on the node's
socket, and the first dial of a hole punch to connect.

* :class:`SharedSocket`: the sans-I/O :class:`mesh.demux.SocketClients` (the
  STUN client, the optional TURN client) plus what their events wake in the
  loop: a future per STUN Binding the node awaits, a listener for TURN events.
  The node feeds it in its own read, flush and timer pass.
* :func:`srflx_candidate`: the server-reflexive candidate STUN outcomes give.
* :func:`first_to_connect`: the outcome of a punch's dials (the first peer, or
  the last error).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from mesh.auth import PeerIdentity
from mesh.demux import SocketClients, TurnUser
from mesh.stun_client import BindingFailed, BindingSucceeded, StunClient
from mesh.turn_client import TurnEvent
from protocol.candidates import Candidate, CandidateKind, candidate_priority
from protocol.stun import Address

__all__ = ["BindingOutcome", "SharedSocket", "first_to_connect", "retrieve", "srflx_candidate"]

logger = logging.getLogger("mesh.node")

BindingOutcome = BindingSucceeded | BindingFailed


class SharedSocket:
    """The node socket's STUN and TURN clients and who waits for their events."""

    def __init__(self, stun: StunClient) -> None:
        self.clients = SocketClients(stun)
        """The sans-I/O part: routing, datagrams, timers (:mod:`mesh.demux`)."""
        self._waiters: dict[bytes, asyncio.Future[BindingOutcome]] = {}
        self._turn_listener: Callable[[TurnEvent], None] | None = None

    def attach_turn(
        self, client: TurnUser | None, on_event: Callable[[TurnEvent], None] | None
    ) -> None:
        """Route the TURN server's datagrams to ``client`` and its events to ``on_event``."""
        self.clients.turn = client
        self._turn_listener = on_event if client is not None else None

    def binding(
        self, server: Address, now: float, loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[BindingOutcome]:
        """Start a Binding transaction to ``server``; its outcome once it has one (the
        caller flushes)."""
        transaction_id = self.clients.stun.request(server, now)
        waiter: asyncio.Future[BindingOutcome] = loop.create_future()
        self._waiters[transaction_id] = waiter
        return waiter

    def dispatch(self) -> None:
        """Hand every STUN outcome to its waiter and every TURN event to the listener."""
        while (event := self.clients.next_event()) is not None:
            if isinstance(event, BindingSucceeded | BindingFailed):
                waiter = self._waiters.pop(event.transaction_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(event)
            elif self._turn_listener is not None:
                try:
                    self._turn_listener(event)
                except Exception:  # a listener's bug must not stop the node's flush
                    logger.exception("TURN event listener failed on %s", type(event).__name__)

    def close(self) -> None:
        """Cancel every wait (the node is closing)."""
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()


def srflx_candidate(outcomes: Iterable[BindingOutcome]) -> Candidate | None:
    """The mapping of the first server that answered, as a ``srflx`` candidate (None:
    none did; why each failed is logged)."""
    for outcome in outcomes:
        if isinstance(outcome, BindingSucceeded):
            host, port = outcome.mapped
            return Candidate(
                kind=CandidateKind.SRFLX,
                address=host.removeprefix("::ffff:") if "." in host else host,
                port=port,
                priority=candidate_priority(CandidateKind.SRFLX),
            )
        logger.info("STUN server %s:%s: %s", *outcome.server, outcome.reason)
    return None


async def first_to_connect(dials: Iterable[asyncio.Future[PeerIdentity]]) -> PeerIdentity:
    """The peer of the first dial that connects; the last error when none does."""
    pending: set[asyncio.Future[PeerIdentity]] = set(dials)
    error: BaseException | None = None
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for fut in done:
            if fut.cancelled():
                continue
            if (exc := fut.exception()) is None:
                return fut.result()
            error = exc
    if error is None:
        raise asyncio.CancelledError
    raise error


def retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a dial's outcome as seen: a punch returns on the first, the rest end unread."""
    if not fut.cancelled():
        fut.exception()
