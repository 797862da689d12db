"""The pure protocol of the Shards of Eternity networking layer.

Everything the lobby and the mesh share: every message as a pydantic v2 model
(:mod:`protocol.messages`), the JSON codec (:mod:`protocol.codec`), the lobby's
WebSocket batch framing (:mod:`protocol.framing`), the REST response bodies
(:mod:`protocol.rest`) and the ACK details of WebSocket requests
(:mod:`protocol.acks`), the binary movement codec (:mod:`protocol.movement`),
version negotiation (:mod:`protocol.version`), factories
(:mod:`protocol.factories`), the error tree (:mod:`protocol.errors`) and the
pure crypto (:mod:`protocol.crypto`).

No I/O: this package imports no asyncio, socket, aiohttp, aioquic or zeroconf
and reads no clock; callers pass ``now``.

The STUN/TURN codec of NAT traversal (:mod:`protocol.stun`, :mod:`protocol.turn`)
is imported by name; its errors (``StunError``) are exported here with the others.
"""

from __future__ import annotations

from protocol import (
    acks,
    codec,
    crypto,
    errors,
    factories,
    framing,
    messages,
    movement,
    rest,
    version,
)
from protocol.acks import *  # noqa: F403
from protocol.codec import *  # noqa: F403
from protocol.crypto import *  # noqa: F403
from protocol.errors import *  # noqa: F403
from protocol.factories import *  # noqa: F403
from protocol.framing import *  # noqa: F403
from protocol.messages import *  # noqa: F403

# mypy reads ``__all__ += m.__all__`` as adding nothing, so a star import of
# protocol.messages would not carry the areas' names on to type checkers: name them too.
from protocol.messages.auth import *  # noqa: F403
from protocol.messages.characters import *  # noqa: F403
from protocol.messages.chat import *  # noqa: F403
from protocol.messages.combat import *  # noqa: F403
from protocol.messages.location import *  # noqa: F403
from protocol.messages.party import *  # noqa: F403
from protocol.messages.peer import *  # noqa: F403
from protocol.messages.system import *  # noqa: F403
from protocol.messages.trade import *  # noqa: F403
from protocol.messages.world import *  # noqa: F403
from protocol.movement import *  # noqa: F403
from protocol.rest import *  # noqa: F403
from protocol.version import *  # noqa: F403

# The public names are exactly those of the parts: each is stated once, in its module.
__all__: list[str] = []
__all__ += acks.__all__
__all__ += codec.__all__
__all__ += crypto.__all__
__all__ += errors.__all__
__all__ += factories.__all__
__all__ += framing.__all__
__all__ += messages.__all__
__all__ += movement.__all__
__all__ += rest.__all__
__all__ += version.__all__
