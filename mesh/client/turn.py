"""When the client reaches a peer through TURN: the policy over the node's TURN path.

:class:`TurnFallback` decides; the node (:meth:`mesh.node.PeerNode.allocate_turn`)
carries. For each peer the lobby pairs us with (its ``PEER_INFO``):

* no connection ``turn_after`` seconds after the pairing (:class:`~mesh.config.MeshConfig`),
  or the path in use went silent (:class:`~mesh.events.PathChanged`): allocate a
  relayed address on the operator's TURN server with the lobby's time-limited
  credentials (:meth:`mesh.client.NetworkClient.get_ice_servers`; never a
  long-lived secret), permit the peer's candidate IPs on it, and register it as
  our ``relay`` candidate (with the server-reflexive address the TURN server saw,
  unless ``reflexive`` is off: what to publish is fixed) so the lobby hands it
  to our paired peers, who dial it;
* a peer that registers a ``relay`` candidate while we have no working link to
  it: dial that address (``path="turn"``), and permit its IPs on our allocation
  if we hold one. Both sides may do both; the duplicate tie-break keeps one link.

The credentials are fetched again before they expire and handed to the
allocation (its refreshes must be signed with valid ones). The node releases an
allocation no link used for ``turn_release_after`` seconds; the relay candidate
is withdrawn then (:meth:`TurnFallback.turn_event`), as when the allocation
fails. Without a TURN server in the lobby's answer nothing happens: reliable
messages keep the lobby relay.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable

from mesh.client.dispatch import BackgroundTasks
from mesh.client.rendezvous import PeerCandidates
from mesh.events import PathChanged
from mesh.node import PeerNode
from mesh.turn_client import Allocated, AllocationFailed, Released, TurnEvent
from protocol.candidates import Candidate, CandidateKind, endpoint_candidate
from protocol.errors import MeshError, StunError
from protocol.rest import IceServersOut
from protocol.turn import parse_turn_url

__all__ = ["TurnFallback"]

logger = logging.getLogger("mesh.client")

_REFRESH_AT = 0.8  # of the credentials' lifetime
_MIN_REFRESH = 5.0


class TurnFallback:
    """The client's TURN policy (see the module docstring).

    ``node``: the running node (None before a character is selected); ``ice``:
    the lobby's ICE servers answer (``refresh=True`` asks afresh); ``register``:
    replaces our relayed and server-reflexive candidates at the lobby;
    ``peer_candidates``: what the lobby gave us of a character; ``reflexive``:
    whether our address as the TURN server saw it is registered too.
    """

    def __init__(
        self,
        *,
        node: Callable[[], PeerNode | None],
        ice: Callable[[bool], Awaitable[IceServersOut]],
        register: Callable[[list[Candidate]], Awaitable[None]],
        peer_candidates: Callable[[int], PeerCandidates | None],
        tasks: BackgroundTasks,
        reflexive: bool = True,
    ) -> None:
        self._reflexive = reflexive
        self._node = node
        self._ice = ice
        self._register = register
        self._peer_candidates = peer_candidates
        self._tasks = tasks
        self._checks: dict[int, asyncio.TimerHandle] = {}
        self._allocating: asyncio.Future[Allocated | None] | None = None
        self._renewal: asyncio.TimerHandle | None = None
        self._dialing: set[tuple[int, str, int]] = set()
        self._silent: set[int] = set()  # characters whose path in use went silent
        self._retry_at = 0.0  # after a failed allocation: not again before (loop time)
        self.registered: list[Candidate] = []
        """The relay (and server-reflexive) candidates we registered for our allocation."""

    # -- what happens ---------------------------------------------------------------------

    def paired(self, entry: PeerCandidates) -> None:
        """The lobby paired us with ``entry``'s character (or updated its candidates)."""
        node = self._node()
        if node is None:
            return
        cid = entry.character_id
        if node.turn_address is not None:
            node.permit_turn(c.address for c in entry.candidates)
        connected = self._connected(node, cid)
        if not connected or cid in self._silent:
            for relay in entry.of_kind(CandidateKind.RELAY):
                self._dial(node, cid, relay)
        if not connected:
            if cid not in self._checks:
                delay = node.config.turn_after
                loop = asyncio.get_running_loop()
                self._checks[cid] = loop.call_later(delay, self._check, cid)

    def path_changed(self, event: PathChanged) -> None:
        """A peer's path in use went silent: open a TURN path to it."""
        cid = event.identity.character_id
        if not event.silent:
            self._silent.discard(cid)
        elif cid not in self._silent:
            self._silent.add(cid)
            self._tasks.spawn(self._reach(cid))

    def turn_event(self, event: TurnEvent) -> None:
        """An event of the node's allocation: one that ended takes its candidates along."""
        if isinstance(event, Released | AllocationFailed) and self.registered:
            self.registered = []
            self._allocating = None
            self._tasks.spawn(self._register([]))

    def close(self) -> None:
        """Stop every timer (the node, and its allocation, close on their own)."""
        for handle in self._checks.values():
            handle.cancel()
        self._checks.clear()
        self._silent.clear()
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        self.registered = []

    # -- internals ------------------------------------------------------------------------

    def _connected(self, node: PeerNode, character_id: int) -> bool:
        identity = node.known_peer(character_id)
        return identity is not None and identity.peer_id in node.peers

    def _check(self, character_id: int) -> None:
        self._checks.pop(character_id, None)
        node = self._node()
        if node is None or self._connected(node, character_id):
            return
        if self._peer_candidates(character_id) is None:
            return  # no longer paired
        logger.info("no direct path to character %d in time: trying TURN", character_id)
        self._tasks.spawn(self._reach(character_id))

    async def _reach(self, character_id: int) -> None:
        """Allocate (once), permit the peer's IPs, dial its relay candidates."""
        node = self._node()
        loop = asyncio.get_running_loop()
        if node is None or loop.time() < self._retry_at:
            return
        try:
            allocated = await self._allocation(node)
        except (MeshError, OSError) as exc:
            self._retry_at = loop.time() + node.config.redial_backoff
            logger.warning("TURN allocation failed (the lobby relay stays): %s", exc)
            return
        if allocated is None:
            return
        entry = self._peer_candidates(character_id)
        if entry is not None and self._node() is node:
            node.permit_turn(c.address for c in entry.candidates)
            for relay in entry.of_kind(CandidateKind.RELAY):
                self._dial(node, character_id, relay)

    async def _allocation(self, node: PeerNode) -> Allocated | None:
        """The node's allocation: made (and registered) once, shared by every caller."""
        pending = self._allocating
        if pending is not None and (not pending.done() or node.turn_address is not None):
            return await asyncio.shield(pending)
        future: asyncio.Future[Allocated | None] = asyncio.get_running_loop().create_future()
        self._allocating = future
        try:
            allocated = await self._allocate(node)
        except BaseException as exc:
            future.set_exception(exc)
            self._allocating = None
            future.exception()  # retrieved: every waiter got it through its own await
            raise
        future.set_result(allocated)
        return allocated

    async def _allocate(self, node: PeerNode) -> Allocated | None:
        ice = await self._ice(False)
        server = await _udp_turn_server(ice)
        if server is None or ice.username is None or ice.password is None:
            return None  # the lobby names no TURN server: the relay carries what it can
        allocated = await node.allocate_turn(server, ice.username, ice.password)
        logger.info("TURN: relayed address %s:%s", allocated.relayed[0], allocated.relayed[1])
        candidates = [_candidate(allocated.relayed, CandidateKind.RELAY)]
        if allocated.mapped is not None and self._reflexive:
            candidates.append(_candidate(allocated.mapped, CandidateKind.SRFLX))
        self.registered = candidates
        await self._register(candidates)
        self._schedule_renewal(node, ice)
        return allocated

    def _schedule_renewal(self, node: PeerNode, ice: IceServersOut) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
        if ice.expires_at is None:
            return
        delay = max(_MIN_REFRESH, _REFRESH_AT * (ice.expires_at - time.time()))
        loop = asyncio.get_running_loop()
        self._renewal = loop.call_later(delay, lambda: self._tasks.spawn(self._renew(node)))

    async def _renew(self, node: PeerNode) -> None:
        """Fresh credentials for a live allocation; withdraw the candidates of a gone one."""
        self._renewal = None
        if self._node() is not node:
            return
        if node.turn_address is None:
            self._allocating = None
            if self.registered:
                self.registered = []
                await self._register([])
            return
        try:
            ice = await self._ice(True)
        except MeshError as exc:
            logger.warning("TURN credentials could not be renewed: %s", exc)
            return
        if ice.username is not None and ice.password is not None:
            node.update_turn_credentials(ice.username, ice.password)
        self._schedule_renewal(node, ice)

    def _dial(self, node: PeerNode, character_id: int, relay: Candidate) -> None:
        key = (character_id, relay.address, relay.port)
        identity = node.known_peer(character_id)
        if identity is None or key in self._dialing or node.core.has_path(identity.peer_id, "turn"):
            return
        self._dialing.add(key)

        async def dial() -> None:
            try:
                await node.connect(identity.credential, (relay.address, relay.port), path="turn")
            except (MeshError, OSError) as exc:
                logger.info("no TURN path to character %d yet: %s", character_id, exc)
            finally:
                self._dialing.discard(key)

        self._tasks.spawn(dial())


def _candidate(address: tuple[object, ...], kind: CandidateKind) -> Candidate:
    host, port = str(address[0]), int(str(address[1]))
    return endpoint_candidate(f"[{host}]:{port}" if ":" in host else f"{host}:{port}", kind)


async def _udp_turn_server(ice: IceServersOut) -> tuple[str, int] | None:
    """The first ``turn:`` server over UDP in the answer, its host resolved."""
    for url in ice.turn_urls:
        try:
            parsed = parse_turn_url(url)
        except StunError:
            continue
        if parsed.secure or parsed.transport != "udp":
            continue  # the node's TURN client speaks UDP only
        infos = await asyncio.get_running_loop().getaddrinfo(
            parsed.host, parsed.port, type=socket.SOCK_DGRAM
        )
        if infos:
            return (str(infos[0][4][0]), int(infos[0][4][1]))
    return None
