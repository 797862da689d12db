"""The lobby's peer directory as a :class:`~mesh.discovery.base.Discovery` source.

The lobby tells a client about peers with ``PEER_INFO`` messages (over its
WebSocket, or from ``GET /api/peers/...``) and about departures with
``PLAYER_LEFT_AREA``. :class:`LobbyDirectory` turns those into the same
``PeerFound`` / ``PeerLost`` events mDNS produces, so the code that connects
peers does not care where they came from. It opens no socket of its own: the
lobby client feeds it (:meth:`LobbyDirectory.peer_info`,
:meth:`LobbyDirectory.character_left`).

``PeerFound`` from this source: ``peer_id`` is the node id (the fingerprint of
the ticket's public key), ``ticket`` the lobby-signed ticket token,
``endpoints`` the parsed ``host:port`` strings (unparsable ones are skipped),
``extra`` holds ``character_id``, ``faction`` and ``location_id`` as strings.
The ticket itself is verified by the node that uses it, not here.
"""

from __future__ import annotations

from collections.abc import Iterable

from mesh.discovery.base import Discovery, Endpoint, PeerFound
from protocol.crypto import verify_ticket
from protocol.errors import CryptoError
from protocol.messages.peer import PeerInfoMessage

__all__ = ["LobbyDirectory", "parse_endpoint"]


def parse_endpoint(text: str) -> Endpoint | None:
    """``"host:port"`` or ``"[v6]:port"`` -> ``(host, port)``; None if malformed."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        return None
    port = int(port_text)
    if not 0 < port < 65536:
        return None
    return host.strip("[]"), port


class LobbyDirectory(Discovery):
    """Peers named by the lobby (see the module docstring)."""

    source_name = "lobby"

    def __init__(
        self, lobby_public_key: bytes | None = None, accepted_keys: Iterable[bytes] = ()
    ) -> None:
        super().__init__()
        self._lobby_key: tuple[bytes, ...] | None = None
        if lobby_public_key is not None:
            self.set_lobby_key(lobby_public_key, accepted_keys)
        self._by_character: dict[int, str] = {}

    def set_lobby_key(self, lobby_public_key: bytes, accepted_keys: Iterable[bytes] = ()) -> None:
        """The lobby key tickets must verify against (node ids are derived from tickets),
        and the other keys it accepts while rotating."""
        self._lobby_key = (lobby_public_key, *accepted_keys)

    def character_peer(self, character_id: int) -> PeerFound | None:
        """The current entry of a character, if the lobby named it."""
        pid = self._by_character.get(character_id)
        return self._peers.get(pid) if pid is not None else None

    def peer_info(self, msg: PeerInfoMessage, *, now: float) -> PeerFound | None:
        """Take one PEER_INFO; returns the event (None when it is ``online=False``).

        The node id is taken from the verified ticket (a ``node_id`` field that
        disagrees with the ticket is ignored). Raises a ``CryptoError`` subclass
        when the ticket does not verify against the lobby key.
        """
        if not msg.online:
            self.character_left(msg.character_id)
            return None
        node_id = msg.node_id
        if self._lobby_key is not None:
            node_id = verify_ticket(msg.ticket, self._lobby_key, now=now).peer_id
        if node_id is None:
            raise CryptoError("PEER_INFO without a verifiable node id")
        endpoints = tuple(e for e in (parse_endpoint(t) for t in msg.endpoints) if e is not None)
        extra = {"character_id": str(msg.character_id)}
        if msg.faction is not None:
            extra["faction"] = msg.faction
        if msg.location_id is not None:
            extra["location_id"] = str(msg.location_id)
        old = self._by_character.get(msg.character_id)
        if old is not None and old != node_id:
            self._lost(old)
        self._by_character[msg.character_id] = node_id
        found = PeerFound(
            peer_id=node_id,
            name=msg.character_name,
            endpoints=endpoints,
            version=msg.version,
            ticket=msg.ticket,
            source=self.source_name,
            extra=extra,
        )
        self._found(found)
        return found

    def character_left(self, character_id: int) -> None:
        """The lobby said the character left (PLAYER_LEFT_AREA / offline)."""
        pid = self._by_character.pop(character_id, None)
        if pid is not None:
            self._lost(pid)

    async def _start(self) -> None:
        return None

    async def _stop(self) -> None:
        self._by_character.clear()
