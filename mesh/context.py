"""What every part of the mesh core reads: who we are, the tunables, the clock offset, the
event queue and the counters (sans-I/O).

One :class:`CoreContext` is made by :class:`mesh.core.MeshCore` and handed to each
part it composes (:mod:`mesh.router`, :mod:`mesh.admission`, :mod:`mesh.reliable`,
:mod:`mesh.datagrams`). It holds no logic: a part's own state stays in the part.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from mesh.auth import Authenticator
from mesh.config import MeshConfig
from mesh.events import CoreEvent
from protocol.crypto import Identity

__all__ = ["STAT_NAMES", "CoreContext"]

STAT_NAMES = (
    "bad_datagrams",
    "spoofed_updates",
    "dropped_packets",
    "rejected_messages",
    "bad_relay",
)
"""The counters of :attr:`CoreContext.stats` (what a hostile or broken peer sent us)."""


@dataclass(slots=True, eq=False)
class CoreContext:
    """The node's identity, credential, tunables, Unix-time offset, events and counters."""

    identity: Identity
    auth: Authenticator
    config: MeshConfig
    relay_enabled: bool = False
    wall_offset: float = 0.0
    """Add to ``now`` to get Unix time (credentials expire in Unix time; ``now`` may be
    a monotonic clock). The driver keeps it current."""
    closed: bool = False
    events: deque[CoreEvent] = field(default_factory=deque)
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_NAMES, 0))

    def wall(self, now: float) -> float:
        """``now`` as Unix time."""
        return now + self.wall_offset
