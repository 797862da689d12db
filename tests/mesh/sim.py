"""Virtual-time network for the sans-I/O core: seeded loss, delay, duplication, cuts,
one-way black holes, relay.

No sockets and no clock: every node is a :class:`MeshCore` driven by this
harness exactly like :class:`mesh.node.PeerNode` drives it (receive, timers,
then send / re-read the timer / drain events).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from mesh.auth import LobbyTicketAuth
from mesh.core import MeshConfig, MeshCore
from mesh.events import (
    CoreEvent,
    DialFailed,
    MessageDelivered,
    PeerConnected,
    PositionReceived,
    RelayRequest,
    SendSettled,
)
from mesh.paths import TurnRoute
from protocol.crypto import Identity, issue_ticket
from protocol.crypto.keys import generate_identity_key, public_key_raw

BASE_TIME = 1_700_000_000.0


@dataclass
class SimNode:
    core: MeshCore
    addr: tuple[str, int]
    character_id: int
    ticket: str
    events: list[CoreEvent] = field(default_factory=list)
    settled: dict[int, SendSettled] = field(default_factory=dict)

    def delivered(self) -> list[MessageDelivered]:
        return [e for e in self.events if isinstance(e, MessageDelivered)]

    def positions(self) -> list[PositionReceived]:
        return [e for e in self.events if isinstance(e, PositionReceived)]


class SimNet:
    """A seeded lossy network of MeshCores in virtual time."""

    def __init__(
        self,
        seed: int,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        delay: tuple[float, float] = (0.005, 0.03),
        relay_loss: float = 0.0,
        relay: bool = False,
        config: Callable[[], MeshConfig] = MeshConfig,
    ) -> None:
        self.rng = random.Random(seed)
        self.loss, self.duplicate, self.delay = loss, duplicate, delay
        self.relay_loss = relay_loss
        self.relay = relay
        self.config = config
        self.now = 0.0
        self.nodes: dict[tuple[str, int], SimNode] = {}
        self.by_character: dict[int, SimNode] = {}
        self.cut: set[tuple[str, int]] = set()
        self.blocked: set[tuple[tuple[str, int], tuple[str, int]]] = set()
        """One-way black holes: ``(src, dst)`` pairs whose datagrams vanish (relay unaffected)."""
        self.lobby_key = generate_identity_key()
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self.packets = 0

    def add(self, character_id: int, *, ttl: float = 10 * 86400) -> SimNode:
        identity = Identity.generate()
        ticket = self.ticket(identity, character_id, ttl=ttl)
        auth = LobbyTicketAuth(public_key_raw(self.lobby_key), ticket)
        core = MeshCore(identity, auth, config=self.config(), relay_enabled=self.relay)
        core.wall_offset = BASE_TIME
        node = SimNode(core, (f"10.0.0.{len(self.nodes) + 1}", 9000), character_id, ticket)
        self.nodes[node.addr] = node
        self.by_character[character_id] = node
        return node

    def ticket(
        self, identity: Identity, character_id: int, *, ttl: float, issued_at: float = 0.0
    ) -> str:
        """A lobby ticket for ``identity``, issued at virtual time ``issued_at``."""
        return issue_ticket(
            self.lobby_key,
            character_id=character_id,
            character_name=f"sim{character_id}",
            faction=None,
            public_key=identity.public_key,
            box_key=identity.box_public_key,
            now=BASE_TIME + issued_at,
            ttl=ttl,
        )

    # driving -------------------------------------------------------------------

    def _at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._counter), action))

    def flush(self, node: SimNode) -> None:
        for data, route in node.core.datagrams_to_send(self.now):
            assert not isinstance(route, TurnRoute)  # the simulated network has no TURN server
            dst = (str(route[0]), int(route[1]))
            self.packets += 1
            if node.addr in self.cut or dst in self.cut or (node.addr, dst) in self.blocked:
                continue
            if self.rng.random() < self.loss:
                continue
            copies = 2 if self.rng.random() < self.duplicate else 1
            for _ in range(copies):
                target = self.nodes.get(dst)
                if target is None:
                    continue
                self._at(
                    self.now + self.rng.uniform(*self.delay),
                    lambda t=target, d=data, s=node.addr: self._deliver(t, d, s),
                )
        while (event := node.core.next_event()) is not None:
            node.events.append(event)
            if isinstance(event, SendSettled):
                node.settled[event.handle] = event
            elif isinstance(event, RelayRequest):
                self._relay(event)

    def _relay(self, request: RelayRequest) -> None:
        if self.rng.random() < self.relay_loss:
            return
        target = self.by_character.get(request.character_id)
        if target is None:
            return

        def arrive() -> None:
            target.core.receive_relayed(request.data, self.now)
            self.flush(target)

        self._at(self.now + self.rng.uniform(0.02, 0.08), arrive)

    def _deliver(self, node: SimNode, data: bytes, src: tuple[str, int]) -> None:
        if node.addr in self.cut or src in self.cut or (src, node.addr) in self.blocked:
            return
        node.core.receive_datagram(data, src, self.now)
        self.flush(node)

    def next_time(self) -> float | None:
        """When the next packet arrives or timer fires."""
        times = [t for n in self.nodes.values() if (t := n.core.get_timer()) is not None]
        if self._queue:
            times.append(self._queue[0][0])
        return min(times) if times else None

    def step(self) -> bool:
        """Advance to the next packet or timer; False when nothing is scheduled."""
        timers = [(t, n) for n in self.nodes.values() if (t := n.core.get_timer()) is not None]
        next_timer = min(timers, key=lambda x: x[0]) if timers else None
        next_packet = self._queue[0][0] if self._queue else None
        if next_timer is None and next_packet is None:
            return False
        if next_packet is not None and (next_timer is None or next_packet <= next_timer[0]):
            when, _, action = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            action()
            return True
        assert next_timer is not None
        when, node = next_timer
        # 1 us past the deadline: aioquic's loss timer recomputes (sent + delay) - delay,
        # which float rounding can leave just short of the deadline forever
        self.now = max(self.now, when + 1e-6)
        node.core.handle_timer(self.now)
        self.flush(node)
        return True

    def run_until(self, done: Callable[[], bool], limit: float = 300.0) -> None:
        end = self.now + limit
        while not done():
            if self.now > end or not self.step():
                raise AssertionError(f"condition not met by t={self.now:.2f}")

    def run_for(self, duration: float) -> None:
        end = self.now + duration
        while True:
            upcoming = self.next_time()
            if upcoming is None or upcoming > end:
                self.now = end
                return
            self.step()

    # helpers --------------------------------------------------------------------------

    def connect(self, a: SimNode, b: SimNode) -> int:
        dial = a.core.connect(b.ticket, b.addr, self.now)
        self.flush(a)
        return dial

    def establish(self, a: SimNode, b: SimNode, attempts: int = 5) -> None:
        """Dial until connected: under heavy loss one dial may time out (a real app retries)."""
        for _ in range(attempts):
            dial = self.connect(a, b)
            self.run_until(
                lambda d=dial: (  # type: ignore[misc]
                    self.connected(a, b)
                    or any(isinstance(e, DialFailed) and e.dial_id == d for e in a.events)
                )
            )
            if self.connected(a, b):
                return
        raise AssertionError("could not connect")

    def connected(self, a: SimNode, b: SimNode) -> bool:
        return b.core.identity.peer_id in a.core.peers and a.core.identity.peer_id in b.core.peers

    def send(self, a: SimNode, b: SimNode, message: object) -> int:
        handle = a.core.send_reliable(b.character_id, message, self.now)  # type: ignore[arg-type]
        self.flush(a)
        return handle


def peer_connected(node: SimNode) -> list[PeerConnected]:
    return [e for e in node.events if isinstance(e, PeerConnected)]
