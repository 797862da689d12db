"""The infrastructure half of :class:`~mesh.client.NetworkClient`: session, socket, node.

:class:`ClientCore` logs in over REST, keeps the lobby WebSocket
(:class:`~mesh.client.socket.LobbySocket`, with reconnection), starts the
client's :class:`~mesh.node.PeerNode` when a character is selected, registers
it with the lobby (public key, box key, endpoint: the lobby answers with a
signed peer ticket), feeds the lobby's peer directory
(:class:`~mesh.discovery.lobby.LobbyDirectory`) from ``PEER_INFO`` and
connects to the peers it names, carries relay envelopes both ways, and
dispatches every message (from the lobby and from peers) to the handlers
registered with :meth:`ClientCore.register_handler`.

The game calls (chat, whisper, party, trade, combat, movement, world) are in
:class:`mesh.client.facade.NetworkClient`, built on this class.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mesh.auth import LobbyTicketAuth
from mesh.client.nearby import NearbyPlayer, NearbyTracker
from mesh.client.peering import PeerMixin
from mesh.client.rest import LobbyRest
from mesh.client.socket import LobbySocket, ReconnectPolicy, SocketState
from mesh.config import MeshConfig
from mesh.discovery.lobby import LobbyDirectory
from mesh.node import PeerNode
from protocol.codec import serialize
from protocol.crypto import (
    WS_FERNET_SALT,
    FernetSealer,
    Identity,
    b64url_decode,
    derive_fernet_key,
)
from protocol.errors import (
    ApiError,
    ConfigError,
    CryptoError,
    ErrorCode,
    MeshError,
    NotConnectedError,
    ProtocolError,
)
from protocol.messages.auth import DisconnectMessage
from protocol.messages.base import BaseMessage, MessageType
from protocol.messages.characters import CharacterUpdateMessage
from protocol.messages.location import LocationUpdateMessage, PlayerLeftAreaMessage
from protocol.messages.party import PartyDisbandMessage, PartyUpdateMessage
from protocol.messages.peer import PeerInfoMessage, RelayMessage
from protocol.messages.system import AckMessage, ErrorMessage
from protocol.messages.trade import (
    TradeCompleteMessage,
    TradeDeclineMessage,
    TradeUpdateMessage,
)
from protocol.messages.world import WorldStateMessage
from protocol.version import check_version

__all__ = ["DEFAULT_P2P_PORT", "DEFAULT_SERVER_URL", "FERNET_WS_SALT", "ClientCore", "Handler"]

logger = logging.getLogger("mesh.client")

DEFAULT_SERVER_URL = "http://localhost:8888"
"""The seed's ``master_server_url``; ``SHARDS_SERVER_URL`` in the environment overrides it."""

DEFAULT_P2P_PORT = 9000
"""The seed's ``p2p_port``; ``SHARDS_P2P_PORT`` in the environment overrides it (0: any)."""

FERNET_WS_SALT = WS_FERNET_SALT
"""PBKDF2 salt of the WebSocket Fernet key (``protocol.crypto.WS_FERNET_SALT``, shared with
the lobby)."""

Handler = Callable[[Any], Any]
"""``handler(message)``: a plain function or a coroutine function."""


class ClientCore(PeerMixin):
    """Lobby session + lobby socket + peer node (see the module docstring)."""

    def __init__(
        self,
        server_url: str | None = None,
        *,
        p2p_host: str = "127.0.0.1",
        p2p_port: int | None = None,
        p2p_max_connections: int = 10,
        p2p_advertise: Sequence[str] | None = None,
        p2p_auto_connect: bool = True,
        encryption_enabled: bool = False,
        encryption_key: str | None = None,
        reconnect: ReconnectPolicy | None = None,
        heartbeat_interval: float = 20.0,
        request_timeout: float = 15.0,
        mesh_config: MeshConfig | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.server_url = (
            server_url or os.environ.get("SHARDS_SERVER_URL") or DEFAULT_SERVER_URL
        ).rstrip("/")
        self.p2p_host = p2p_host
        self.p2p_port = p2p_port if p2p_port is not None else _env_port()
        self.p2p_max_connections = p2p_max_connections
        self.p2p_advertise = list(p2p_advertise) if p2p_advertise is not None else None
        self.p2p_auto_connect = p2p_auto_connect
        self.encryption_enabled = encryption_enabled
        self.encryption_key = encryption_key
        self.reconnect_policy = reconnect or ReconnectPolicy()
        self.heartbeat_interval = heartbeat_interval
        self.request_timeout = request_timeout
        self.mesh_config = mesh_config
        self.identity = identity or Identity.generate()
        self.rest = LobbyRest(self.server_url, timeout=request_timeout)
        self.directory = LobbyDirectory()
        self.nearby = NearbyTracker()
        self.node: PeerNode | None = None
        self.socket: LobbySocket | None = None
        self.account: dict[str, Any] | None = None
        self.character: dict[str, Any] | None = None
        self.ticket: str | None = None
        self.lobby_public_key: bytes | None = None
        self.lobby_status: dict[str, Any] = {}
        self.party: PartyUpdateMessage | None = None
        self.world_state: WorldStateMessage | None = None
        self.trades: dict[str, TradeUpdateMessage] = {}
        """The last trade window (``TRADE_UPDATE``) of each unfinished trade, by id."""
        self._auth: LobbyTicketAuth | None = None
        self._ticket_ready = False
        self._renewal: asyncio.TimerHandle | None = None
        self._directory_closed = False
        self._leaving = False
        self._handlers: dict[MessageType, list[Handler]] = {}
        self._pending: dict[str, asyncio.Future[AckMessage]] = {}
        self._peer_characters: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._state_waiters: list[tuple[SocketState, asyncio.Future[None]]] = []
        self.directory.add_listener(self._on_discovery)

    # -- session ------------------------------------------------------------------------

    async def register(self, username: str, password: str) -> dict[str, Any]:
        """Create an account (``POST /api/auth/register``); raises :class:`ApiError`."""
        data = await self.rest.post(
            "/api/auth/register", {"username": username, "password": password}, auth=False
        )
        return dict(data)

    async def connect(
        self, username: str, password: str, *, register: bool = False
    ) -> dict[str, Any]:
        """Log in (optionally registering first) and open the lobby WebSocket.

        Returns the login answer (``token``, ``account_id``, ``username``, ...).
        Raises :class:`ApiError` (``status``/``code`` of the lobby's answer, or
        ``status=0, code=unavailable`` when the lobby is unreachable or speaks an
        incompatible protocol version).
        """
        status = await self.rest.get("/api/status", auth=False)
        self.lobby_status = dict(status)
        try:
            check_version(str(status.get("protocol_version", "")))
        except ProtocolError as exc:
            raise ApiError(str(exc), code=ErrorCode.VERSION_MISMATCH, status=0) from exc
        try:
            self.lobby_public_key = b64url_decode(str(status["lobby_public_key"]))
        except (KeyError, ValueError) as exc:
            raise ApiError(
                "the lobby status has no valid lobby_public_key", code=ErrorCode.UNAVAILABLE
            ) from exc
        if self._directory_closed:
            self.directory = LobbyDirectory()
            self.directory.add_listener(self._on_discovery)
            self._directory_closed = False
        self.directory.set_lobby_key(self.lobby_public_key)
        sealer = await self._ws_sealer(status)
        if register:
            await self.register(username, password)
        login = await self.rest.post(
            "/api/auth/login", {"username": username, "password": password}, auth=False
        )
        self.rest.token = str(login["token"])
        self.account = dict(login)
        if self.socket is not None:
            self._leaving = True
            await self.socket.close()
        self._leaving = False
        self.socket = LobbySocket(
            self.rest,
            on_message=self._on_lobby_message,
            on_state=self._on_socket_state,
            policy=self.reconnect_policy,
            heartbeat_interval=self.heartbeat_interval,
            sealer=sealer,
        )
        await self.socket.open()
        return dict(login)

    async def disconnect(self, *, logout: bool = False) -> None:
        """Leave: say goodbye on the socket, close it and the peer node (idempotent).

        ``logout=True`` also revokes the session token (``POST /api/auth/logout``).
        """
        self._leaving = True
        if self.socket is not None:
            goodbye = serialize(DisconnectMessage(reason="client disconnect")).encode()
            await self.socket.close(goodbye=goodbye)
        if logout and self.rest.token is not None:
            try:
                await self.rest.post("/api/auth/logout")
            except MeshError as exc:
                logger.debug("logout failed: %s", exc)
        await self._close_node()
        await self.directory.close()
        self._directory_closed = True
        self.character = None
        self.party = None
        self.trades.clear()
        self.nearby.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(NotConnectedError("the client disconnected"))
        self._pending.clear()
        await self.rest.close()

    async def __aenter__(self) -> ClientCore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    @property
    def connected(self) -> bool:
        """True while the lobby WebSocket is open."""
        return self.socket is not None and self.socket.is_open()

    @property
    def connection_state(self) -> SocketState:
        """``idle``, ``connecting``, ``connected``, ``reconnecting`` or ``closed``."""
        return self.socket.state if self.socket is not None else "idle"

    async def wait_connection_state(self, state: SocketState, wait: float = 30.0) -> None:
        """Wait until the lobby connection is in ``state`` (TimeoutError after ``wait`` s)."""
        if self.connection_state == state:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (state, fut)
        self._state_waiters.append(entry)
        try:
            await asyncio.wait_for(fut, wait)
        finally:
            if entry in self._state_waiters:
                self._state_waiters.remove(entry)

    # -- characters ---------------------------------------------------------------------

    async def get_characters(self) -> list[dict[str, Any]]:
        """The account's characters as dicts (``id``, ``name``, ``faction``, ...)."""
        data = await self.rest.get("/api/characters")
        return [dict(c) for c in data.get("characters", [])]

    async def create_character(
        self, name: str, faction: str, character_class: str = "Warrior"
    ) -> dict[str, Any]:
        """Create a character; returns it as a dict."""
        data = await self.rest.post(
            "/api/characters",
            {"name": name, "faction": faction, "character_class": character_class},
        )
        return dict(data)

    async def delete_character(self, character_id: int) -> None:
        await self.rest.delete(f"/api/characters/{int(character_id)}")

    async def select_character(self, character_id: int) -> dict[str, Any]:
        """Select a character: start the peer node, register it, get the peer ticket.

        Returns the character (dict). The lobby then names the peers at the
        character's location (``PEER_INFO``) and the client connects to them.
        """
        if self.rest.token is None or self.lobby_public_key is None:
            raise NotConnectedError("not logged in: call connect() first")
        if self.character is not None and int(self.character["id"]) != int(character_id):
            await self._close_node()
            self.identity = Identity.generate()
            self.party = None
            self.nearby.clear()
        node = await self._ensure_node()
        data = await self._post_select(int(character_id), node)
        self.character = dict(data["character"])
        location = int(self.character["location_id"])
        self.nearby.set_own(int(self.character["id"]), location)
        node.set_location(location)
        for found in list(self.directory.peers.values()):  # named while we waited for the ticket
            self._adopt_peer(node, found)
        self._schedule_renewal(data.get("ticket_expires_at"))
        return dict(self.character)

    # -- handlers -----------------------------------------------------------------------

    def register_handler(self, message_type: MessageType | str, handler: Handler) -> None:
        """Call ``handler(message)`` (sync or async) for every ``message_type`` message.

        Messages from the lobby WebSocket and from peers (whisper, party chat,
        movement, departures) are dispatched alike. A handler's exception is
        logged and does not stop the others.
        """
        self._handlers.setdefault(MessageType(message_type), []).append(handler)

    def unregister_handler(self, message_type: MessageType | str, handler: Handler) -> None:
        handlers = self._handlers.get(MessageType(message_type), [])
        if handler in handlers:
            handlers.remove(handler)

    # -- nearby -------------------------------------------------------------------------

    def get_nearby_players(self, location_id: int | None = None) -> list[NearbyPlayer]:
        """Players at ``location_id`` (default: our location) as this client knows them."""
        return self.nearby.players(location_id)

    # -- internals: requests over the socket ------------------------------------------------

    def _require_socket(self) -> LobbySocket:
        if self.socket is None:
            raise NotConnectedError("not connected: call connect() first")
        return self.socket

    async def _send(self, msg: BaseMessage) -> str:
        """Send one message to the lobby; returns its ``message_id``."""
        await self._require_socket().send(msg)
        return msg.message_id

    async def _request(self, msg: BaseMessage) -> dict[str, Any]:
        """Send a request the lobby answers with ACK or ERROR (``ref_id``); return ACK details.

        Raises :class:`ApiError` with the ERROR's code (``status`` 0), or
        :class:`NotConnectedError` when the socket is down or no answer came in
        ``request_timeout`` seconds.
        """
        socket = self._require_socket()
        fut: asyncio.Future[AckMessage] = asyncio.get_running_loop().create_future()
        self._pending[msg.message_id] = fut
        try:
            await socket.send(msg)
            try:
                ack = await asyncio.wait_for(fut, self.request_timeout)
            except TimeoutError as exc:
                raise NotConnectedError(
                    f"no answer from the lobby to {msg.type} in {self.request_timeout:g} s"
                ) from exc
        finally:
            self._pending.pop(msg.message_id, None)
        return dict(ack.details or {})

    # -- internals: dispatch -----------------------------------------------------------------

    def _on_socket_state(self, state: SocketState) -> None:
        for want, waiter in list(self._state_waiters):
            if want == state and not waiter.done():
                waiter.set_result(None)
        if state in ("reconnecting", "closed"):
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(NotConnectedError(f"the lobby connection is {state}"))
        if state == "closed" and not self._leaving:
            # The socket gave up (session ended, or reconnection attempts exhausted):
            # DISCONNECT handlers hear it; peer connections stay up.
            self._dispatch(DisconnectMessage(reason="lobby connection lost"))

    def _on_lobby_message(self, msg: BaseMessage) -> None:
        now = time.time()
        if isinstance(msg, AckMessage | ErrorMessage) and msg.ref_id is not None:
            fut = self._pending.get(msg.ref_id)
            if fut is not None and not fut.done():
                if isinstance(msg, AckMessage):
                    fut.set_result(msg)
                else:
                    fut.set_exception(
                        ApiError(msg.error_message, code=msg.error_code, details=msg.details)
                    )
        self._track(msg, now)
        self._dispatch(msg)

    def _track(self, msg: BaseMessage, now: float) -> None:
        if isinstance(msg, RelayMessage):
            if self.node is not None:
                try:
                    data = base64.b64decode(msg.payload, validate=True)
                except (binascii.Error, ValueError):
                    logger.debug("relay payload is not base64")
                    return
                self.node.receive_relayed(data)
            return
        if isinstance(msg, PeerInfoMessage):
            if self.character is not None and msg.character_id == int(self.character["id"]):
                return
            try:
                self.directory.peer_info(msg, now=now)
            except CryptoError as exc:
                logger.warning("PEER_INFO for %s refused: %s", msg.character_name, exc)
                return
        elif isinstance(msg, PlayerLeftAreaMessage):
            self.directory.character_left(msg.character_id)
        elif isinstance(msg, PartyUpdateMessage):
            mine = self.character is not None and any(
                m.character_id == int(self.character["id"]) for m in msg.members
            )
            self.party = msg if mine else None
        elif isinstance(msg, PartyDisbandMessage):
            if self.party is not None and self.party.party_id == msg.party_id:
                self.party = None
        elif isinstance(msg, WorldStateMessage):
            self.world_state = msg
        elif isinstance(msg, TradeUpdateMessage):
            self.trades[msg.trade_id] = msg
        elif isinstance(msg, TradeCompleteMessage | TradeDeclineMessage):
            self.trades.pop(msg.trade_id, None)
        elif isinstance(msg, LocationUpdateMessage | CharacterUpdateMessage):
            self._track_own(msg)
        self.nearby.observe(msg, now)

    def _track_own(self, msg: LocationUpdateMessage | CharacterUpdateMessage) -> None:
        character = self.character
        if character is None or msg.character_id != int(character["id"]):
            if isinstance(msg, LocationUpdateMessage) and self.node is not None:
                self.node.set_peer_location(msg.character_id, msg.location_id)
            return
        if isinstance(msg, CharacterUpdateMessage):
            character.update(
                {k: v for k, v in msg.model_dump().items() if k in character and v is not None}
            )
        if msg.location_id is not None:
            self._own_location(msg.location_id)

    def _own_location(self, location_id: int) -> None:
        character = self.character
        if character is None:
            return
        character["location_id"] = location_id
        if self.nearby.own_location_id == location_id:
            return
        keep = self._party_member_ids()
        for player in list(self.nearby.players()):
            if player.character_id not in keep:
                self.directory.character_left(player.character_id)
        self.nearby.set_own(int(character["id"]), location_id)
        if self.node is not None:
            self.node.set_location(location_id)

    def _on_peer_message(self, msg: BaseMessage) -> None:
        if isinstance(msg, PlayerLeftAreaMessage):
            # The lobby is the authority on areas; a dropped direct connection only
            # counts as a departure while the lobby cannot tell us.
            if self.connected or self.nearby.get(msg.character_id) is None:
                return
        self.nearby.observe(msg, time.time())
        self._dispatch(msg)

    def _dispatch(self, msg: BaseMessage) -> None:
        for handler in list(self._handlers.get(MessageType(msg.type), ())):
            try:
                result = handler(msg)
            except Exception:
                logger.exception("handler %r failed on %s", handler, msg.type)
                continue
            if inspect.isawaitable(result):
                self._spawn(_guarded(result, handler, str(msg.type)))

    async def _ws_sealer(self, status: dict[str, Any]) -> FernetSealer | None:
        if not self.encryption_enabled:
            return None
        if not self.encryption_key:
            raise ApiError(
                "encryption_enabled needs an encryption_key (the secret shared with the lobby)",
                code=ErrorCode.VALIDATION_ERROR,
            )
        offered = status.get("ws_encodings") or []
        if "fernet" not in offered:
            raise ApiError(
                "the lobby does not offer Fernet WebSocket encryption (ws_encodings in "
                "/api/status); refusing to send in the clear with encryption_enabled=True",
                code=ErrorCode.UNAVAILABLE,
            )
        # PBKDF2 with 100,000 iterations takes ~0.1 s: keep it off the event loop.
        key = await asyncio.to_thread(derive_fernet_key, self.encryption_key, FERNET_WS_SALT)
        return FernetSealer(key)


async def _guarded(result: Awaitable[Any], handler: Handler, message_type: str) -> None:
    try:
        await result
    except Exception:
        logger.exception("handler %r failed on %s", handler, message_type)


def _env_port() -> int | None:
    """``SHARDS_P2P_PORT`` from the environment, else None: the node prefers
    ``DEFAULT_P2P_PORT`` and takes a free port when that one is taken."""
    text = os.environ.get("SHARDS_P2P_PORT", "").strip()
    if not text:
        return None
    try:
        port = int(text)
    except ValueError as exc:
        raise ConfigError(f"SHARDS_P2P_PORT must be a port number, got {text!r}") from exc
    if not 0 <= port <= 65535:
        raise ConfigError(f"SHARDS_P2P_PORT out of range: {port}")
    return port
