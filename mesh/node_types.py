"""The value types of :class:`mesh.node.PeerNode`'s API: targets, handlers, results, events.

Split from :mod:`mesh.node` (which re-exports every name) so the adapter
module holds only the adapter. ``Handler``, ``VecLike`` and ``to_vec3`` are the
protocol's (:mod:`protocol.messages.base`, :mod:`protocol.factories`), shared
with ``NetworkClient``; ``ConnectionQuality`` is :mod:`mesh.quality`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mesh.events import Path, PeerConnected, PeerDisconnected
from mesh.quality import ConnectionQuality
from protocol.errors import MeshError
from protocol.factories import VecLike, to_vec3
from protocol.messages.base import Handler

__all__ = [
    "ConnectionQuality",
    "Handler",
    "PartySendResult",
    "PeerEvent",
    "PeerListener",
    "RelayLike",
    "RelayTransport",
    "SendResult",
    "Target",
    "VecLike",
    "describe_peer_event",
    "to_vec3",
]

Target = int | str
"""A peer: its character id (int) or its peer id (str)."""
PeerEvent = PeerConnected | PeerDisconnected
"""What :meth:`PeerNode.add_peer_listener` listeners and :meth:`PeerNode.peer_events` get."""
PeerListener = Callable[[PeerEvent], Any]
"""``listener(event)``, a plain function or a coroutine function."""


@runtime_checkable
class RelayTransport(Protocol):
    """Forwards an opaque envelope to a character through the lobby (NetworkClient)."""

    async def send(self, target_character_id: int, data: bytes) -> None:
        """Deliver ``data`` to the node of ``target_character_id`` (its ``receive_relayed``)."""


RelayLike = RelayTransport | Callable[[int, bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SendResult:
    """An acknowledged reliable message: its id and the path that delivered it.

    ``path`` is ``"direct"`` or ``"relay"``: the receiver acknowledges each copy by
    the path it came by, and the first acknowledgement settles the send.
    """

    message_id: str
    path: Path


@dataclass(frozen=True, slots=True)
class PartySendResult:
    """Party chat to several members: who acknowledged (and how), who could not be reached."""

    message_id: str
    paths: dict[Target, Path] = field(default_factory=dict)
    failed: dict[Target, MeshError] = field(default_factory=dict)


def describe_peer_event(event: PeerEvent) -> str:
    """A short text for a log line: the event's kind and the peer id."""
    return f"{type(event).__name__} of {event.identity.peer_id[:12]}"
