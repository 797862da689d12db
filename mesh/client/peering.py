"""The peer half of :class:`~mesh.client.core.ClientCore`: node, ticket, directory, lookups.

:class:`PeerMixin` starts the client's :class:`~mesh.node.PeerNode` (one UDP
socket on ``p2p_host:p2p_port``), registers it with the lobby at select time
(``POST /api/characters/select`` with the node's Ed25519 and X25519 keys and
its endpoint; the answer carries the lobby-signed ticket the node then presents
in every handshake), renews that ticket at 80 % of its lifetime, turns the
lobby directory's ``PeerFound`` / ``PeerLost`` into node peers (dialled at once
with ``p2p_auto_connect``), finds a whisper target's entry with
``GET /api/peers/{id}`` or ``GET /api/peers?name=``, and carries relay
envelopes out through the lobby socket as ``RELAY`` messages.

Until our own ticket is in place no peer is adopted (a handshake would fail):
``PEER_INFO`` that arrives before the select answer is adopted right after it.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

from mesh.auth import LobbyTicketAuth
from mesh.client.nearby import NearbyTracker
from mesh.client.rest import LobbyRest
from mesh.client.socket import LobbySocket
from mesh.config import MeshConfig
from mesh.discovery.base import DiscoveryEvent, PeerFound, PeerLost
from mesh.discovery.lobby import LobbyDirectory
from mesh.node import PeerNode
from protocol.crypto import Identity, b64url_decode, b64url_encode
from protocol.errors import (
    ApiError,
    ErrorCode,
    MeshError,
    NotConnectedError,
    PeerUnreachableError,
    ShardsError,
)
from protocol.messages.base import BaseMessage, MessageType
from protocol.messages.party import PartyUpdateMessage
from protocol.messages.peer import PeerInfoMessage, RelayMessage

__all__ = ["PEER_TYPES", "PeerMixin"]

logger = logging.getLogger("mesh.client")

PEER_TYPES = (
    MessageType.WHISPER,
    MessageType.PARTY_CHAT,
    MessageType.CHAT,
    MessageType.MOVE,
    MessageType.POSITION_UPDATE,
    MessageType.PLAYER_LEFT_AREA,
)
"""What the node delivers to the client's handlers."""


class PeerMixin:
    """Node, ticket, directory adoption, peer lookups (see the module docstring)."""

    identity: Identity
    rest: LobbyRest
    socket: LobbySocket | None
    directory: LobbyDirectory
    nearby: NearbyTracker
    node: PeerNode | None
    character: dict[str, Any] | None
    party: PartyUpdateMessage | None
    ticket: str | None
    lobby_public_key: bytes | None
    p2p_host: str
    p2p_port: int | None
    p2p_max_connections: int
    p2p_advertise: list[str] | None
    p2p_auto_connect: bool
    mesh_config: MeshConfig | None
    _auth: LobbyTicketAuth | None
    _ticket_ready: bool
    _renewal: asyncio.TimerHandle | None
    _peer_characters: dict[str, int]
    _tasks: set[asyncio.Task[Any]]

    def _on_peer_message(self, msg: BaseMessage) -> None:
        raise NotImplementedError

    async def _post_select(self, character_id: int, node: PeerNode) -> dict[str, Any]:
        """``POST /api/characters/select`` with the node's keys and endpoint; take the ticket."""
        body = {
            "character_id": character_id,
            "peer_public_key": b64url_encode(self.identity.public_key),
            "box_key": b64url_encode(self.identity.box_public_key),
            "endpoints": await self._advertised_endpoints(node),
        }
        data = dict(await self.rest.post("/api/characters/select", body))
        ticket = data.get("ticket")
        if not isinstance(ticket, str):
            raise ApiError("the lobby issued no peer ticket", code=ErrorCode.UNAVAILABLE)
        try:
            lobby_key = b64url_decode(str(data.get("lobby_public_key", "")))
        except ValueError:
            lobby_key = b""
        if lobby_key != self.lobby_public_key:
            raise ApiError(
                "the ticket key differs from the lobby's published key",
                code=ErrorCode.HANDSHAKE_FAILED,
            )
        assert self._auth is not None  # noqa: S101 - set by _ensure_node
        self._auth.update_ticket(ticket)
        self.ticket = ticket
        self._ticket_ready = True
        return data

    def _schedule_renewal(self, expires_at: object) -> None:
        """Renew our ticket (re-select) at 80 % of its lifetime; retry every 30 s on failure."""
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        if not isinstance(expires_at, int | float):
            return
        delay = max(5.0, 0.8 * (float(expires_at) - time.time()))
        loop = asyncio.get_running_loop()
        self._renewal = loop.call_later(delay, lambda: self._spawn(self._renew(float(expires_at))))

    async def _renew(self, expires_at: float) -> None:
        self._renewal = None
        node, character = self.node, self.character
        if node is None or character is None:
            return
        try:
            data = await self._post_select(int(character["id"]), node)
        except MeshError as exc:
            logger.warning("peer ticket renewal failed (retrying): %s", exc)
            if time.time() < expires_at:
                self._renewal = asyncio.get_running_loop().call_later(
                    30.0, lambda: self._spawn(self._renew(expires_at))
                )
            return
        self._schedule_renewal(data.get("ticket_expires_at"))

    def _require_character(self) -> dict[str, Any]:
        if self.character is None:
            raise NotConnectedError(
                "no character selected: call select_character() first",
                code=ErrorCode.NO_CHARACTER,
            )
        return self.character

    def _require_node(self) -> PeerNode:
        self._require_character()
        if self.node is None:
            raise NotConnectedError("the peer node is not running")
        return self.node

    async def _ensure_node(self) -> PeerNode:
        if self.node is not None:
            return self.node
        self._ticket_ready = False
        self.ticket = None
        assert self.lobby_public_key is not None  # noqa: S101 - checked by callers
        self._auth = LobbyTicketAuth(self.lobby_public_key, self.ticket or "-")
        node = PeerNode(
            self.identity,
            host=self.p2p_host,
            port=self.p2p_port,
            auth=self._auth,
            relay=self._relay_send,
            max_connections=self.p2p_max_connections,
            config=self.mesh_config,
        )
        for message_type in PEER_TYPES:
            node.register_handler(message_type, self._on_peer_message)
        await node.start()
        self.node = node
        return node

    async def _close_node(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        node, self.node = self.node, None
        if node is not None:
            await node.close()
        self._peer_characters.clear()

    async def _advertised_endpoints(self, node: PeerNode) -> list[str]:
        """``p2p_advertise``, else the bound endpoint; for a wildcard bind, the local
        address of the route towards the lobby (a UDP ``connect`` sends nothing)."""
        if self.p2p_advertise is not None:
            return list(self.p2p_advertise)
        host, port = node.address
        if not ipaddress.ip_address(host).is_unspecified:
            return [node.endpoint]
        lobby_host = urlsplit(self.rest.base_url).hostname or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                lobby_host, 9, family=family, type=socket.SOCK_DGRAM
            )
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect(infos[0][4])
                local = str(probe.getsockname()[0])
        except (OSError, IndexError):
            logger.warning("cannot tell which address to advertise; peers will use the relay")
            return []
        return [f"[{local}]:{port}" if ":" in local else f"{local}:{port}"]

    async def _relay_send(self, character_id: int, data: bytes) -> None:
        payload = base64.b64encode(data).decode("ascii")
        if self.socket is None:
            raise NotConnectedError("no lobby connection to relay through")
        await self.socket.send(RelayMessage(target_id=character_id, payload=payload))

    def _on_discovery(self, event: DiscoveryEvent) -> None:
        node = self.node
        if node is None:
            return
        if isinstance(event, PeerLost):
            cid = self._peer_characters.pop(event.peer_id, None)
            if cid is not None and cid in self._party_member_ids():
                return
            node.disconnect_peer(event.peer_id)
            return
        self._adopt_peer(node, event)

    def _adopt_peer(self, node: PeerNode, found: PeerFound) -> None:
        if found.ticket is None:
            return
        cid_text = found.extra.get("character_id")
        if cid_text is not None:
            self._peer_characters[found.peer_id] = int(cid_text)
        if found.peer_id == node.peer_id or not self._ticket_ready:
            # Until our own ticket is in place a handshake would fail: select_character
            # adopts every directory entry once it is.
            return
        addr = next((e for e in found.endpoints if _is_ip(e[0])), None)
        try:
            node.add_peer(found.ticket, addr)
        except MeshError as exc:
            logger.warning("lobby named a peer with a bad ticket (%s): %s", found.name, exc)
            return
        location = found.extra.get("location_id")
        if cid_text is not None and location is not None:
            node.set_peer_location(int(cid_text), int(location))
        if self.p2p_auto_connect and found.peer_id not in node.peers and found.endpoints:
            self._spawn(self._dial(node, found.ticket, found.endpoints[0], found.name))

    async def _dial(
        self, node: PeerNode, ticket: str, endpoint: tuple[str, int], name: str
    ) -> None:
        try:
            await node.connect(ticket, endpoint)
        except (MeshError, OSError) as exc:
            logger.info("no direct connection to %s yet (%s): relay fallback", name, exc)

    def _party_member_ids(self) -> set[int]:
        if self.party is None:
            return set()
        return {m.character_id for m in self.party.members}

    async def _lookup_peer(self, target: int | str) -> int:
        """The character id of ``target`` (id or name), known to the node (REST lookup)."""
        node = self._require_node()
        me = self._require_character()
        if target == me["id"] or (
            isinstance(target, str) and target.casefold() == str(me["name"]).casefold()
        ):
            raise MeshError("that is your own character", code=ErrorCode.VALIDATION_ERROR)
        if isinstance(target, int):
            if node.core.known_peer(target) is not None:
                return target
            path, params = f"/api/peers/{target}", None
        else:
            player = self.nearby.by_name(target)
            if player is not None and node.core.known_peer(player.character_id) is not None:
                return player.character_id
            path, params = "/api/peers", {"name": target}
        try:
            data = await self.rest.get(path, params=params)
            info = PeerInfoMessage.model_validate(data)
            self.directory.peer_info(info, now=time.time())
        except ApiError as exc:
            if exc.status == 404:
                raise PeerUnreachableError(
                    f"{target!r} is offline or has no peer node", details={"target": target}
                ) from exc
            raise
        except (ValueError, ShardsError) as exc:
            raise PeerUnreachableError(f"the lobby's entry for {target!r} is unusable") from exc
        if node.core.known_peer(info.character_id) is None:
            raise PeerUnreachableError(f"{target!r} has no usable peer ticket")
        return info.character_id

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
