"""A NAT-lab player for hole-punching measurements: :mod:`tests.netlab_player` plus timing.

``python -m tests.natlab_punch_player SERVER_URL [CONFIG_JSON]`` speaks the same
JSON lines as :mod:`tests.netlab_player`, with three more commands and one more
event (times are ``time.time()`` of the player's host, the one clock every lab
namespace shares):

- ``learned``: waits until the client registered what it learned by STUN at
  select; answers its candidates;
- ``away``: moves to the first neighbour of its location (so the lobby pairs
  it with nobody there by location);
- ``pair`` ``target``: asks the lobby to pair us with ``target`` (what a
  whisper does first: ``POST /api/peers/{id}/pair``) and answers ``{"at": t}``,
  the time just before the request; the punch follows by itself;
- event ``{"event": "linked", "character_id", "at", "address", "path"}`` when a
  peer's connection is authenticated: ``address`` as :mod:`tests.netlab_player`'s
  peer events give it, ``path`` the one the node then uses to reach the peer
  (``"direct"``, or ``"turn"`` for QUIC relayed by a TURN server).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from mesh.events import PeerConnected
from mesh.node import PeerEvent
from tests.netlab_player import Player, _address, _emit

__all__ = ["PunchPlayer", "main"]


class PunchPlayer(Player):
    """:class:`tests.netlab_player.Player` with the commands of the module docstring."""

    def __init__(self, server_url: str, config: dict[str, Any]) -> None:
        super().__init__(server_url, config)
        self.ops.update({"learned": self.learned, "away": self.away, "pair": self.pair})
        self._timed = False

    async def select(self, args: dict[str, Any]) -> Any:
        answer = await super().select(args)
        node = self.client.node
        if node is not None and not self._timed:
            self._timed = True
            node.add_peer_listener(self._on_linked)
        return answer

    async def learned(self, args: dict[str, Any]) -> Any:
        return [c.model_dump(mode="json") for c in await self.client.candidates_learned()]

    async def away(self, args: dict[str, Any]) -> Any:
        character = self.client.character
        assert character is not None  # noqa: S101 - played first
        world = await self.client.get_world_map()
        here = next(loc for loc in world.locations if loc.id == character.location_id)
        ack = await self.client.send_move(here.neighbours[0])
        return {"location_id": ack.location_id}

    async def pair(self, args: dict[str, Any]) -> Any:
        at = time.time()
        await self.client.peers.lookup(int(args["target"]))
        return {"at": at}

    def _on_linked(self, event: PeerEvent) -> None:
        if not isinstance(event, PeerConnected):
            return
        at = time.time()
        node = self.client.node
        character_id = event.identity.character_id
        quality = node.connection_quality(character_id) if node is not None else None
        _emit(
            {
                "event": "linked",
                "character_id": character_id,
                "at": at,
                "address": _address(event.address),
                "path": quality.path if quality is not None else None,
            }
        )


def main(argv: list[str]) -> None:
    server_url = argv[0]
    config = json.loads(argv[1]) if len(argv) > 1 else {}
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(PunchPlayer(server_url, config).run())


if __name__ == "__main__":
    main(sys.argv[1:])
