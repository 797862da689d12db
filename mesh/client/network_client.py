"""``NetworkClient``: the seed's game client API over the lobby and the peer mesh.

Example (the seed's "Connecting as a Client")::

    client = NetworkClient()                     # SHARDS_SERVER_URL or http://localhost:8888
    await client.connect("username", "password")
    client.register_handler(MessageType.CHAT, on_chat)
    characters = await client.get_characters()
    await client.select_character(characters[0]["id"])
    await client.send_chat("Hello, world!")
    world_state = await client.get_world_state()
    await client.disconnect()

It is composed of three parts, each usable and testable alone:

* :class:`~mesh.client.session.LobbySession`: login over REST, the lobby
  WebSocket (reconnecting), requests answered by ``ACK``/``ERROR``;
* :class:`~mesh.client.peers.PeerSide`: the peer node, its lobby-signed ticket,
  the peers the lobby names, the relay;
* :class:`~mesh.client.state.ClientState`: the pure view of our character,
  party, trades, world and who is near, fed every message.

``NetworkClient`` routes each message between them and to the handlers
(:class:`~mesh.client.dispatch.HandlerTable`).

What travels where: chat, faction chat, MOVE, combat, party and trade requests
go to the lobby (WebSocket; requests are answered ``ACK`` or ``ERROR``);
whispers and party chat go peer to peer over QUIC streams, falling back to the
lobby relay sealed end to end (the result says which path); position updates
go peer to peer as QUIC datagrams. REST answers are the typed bodies of
:mod:`protocol.rest`, the ``ACK`` of a request the typed details of
:mod:`protocol.acks` (both readable as ``body.field`` or ``body["field"]``).

Errors: every call raises :class:`~protocol.errors.MeshError` subclasses only:

* :class:`~protocol.errors.ApiError` the lobby refused (``code``; ``status`` is
  the HTTP status for REST calls, 0 for WebSocket requests and for an
  unreachable lobby, then ``code=unavailable``);
* :class:`~protocol.errors.NotConnectedError` not logged in, no character
  selected (the message says what to call), the lobby socket is down
  (reconnecting), or no answer in time;
* :class:`~protocol.errors.PeerUnreachableError` a whisper or party message
  reached nobody (no direct path, relay failed, or the target is offline).

Protocol errors the lobby reports asynchronously reach ``ERROR`` handlers as
:class:`~protocol.messages.system.ErrorMessage`.

A failed :meth:`NetworkClient.connect` closes what it opened. A connected
client whose event loop ends without :meth:`NetworkClient.disconnect` (an
exception ended ``asyncio.run``) disconnects itself while the loop cancels its
tasks, so nothing is left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from typing import Self, TypeVar

from mesh.client.dispatch import BackgroundTasks, HandlerTable
from mesh.client.nearby import NearbyPlayer
from mesh.client.peers import PeerSettings, PeerSide, env_p2p_port
from mesh.client.requests import (
    TradeItemsLike,
    combat_start,
    party_invite,
    trade_confirmation,
    trade_items,
    trade_request,
)
from mesh.client.rest import read_body
from mesh.client.session import LobbySession
from mesh.client.socket import ReconnectPolicy, SocketState
from mesh.client.state import ClientState
from mesh.config import MeshConfig
from mesh.node import ConnectionQuality, PartySendResult, PeerNode, SendResult
from protocol import acks
from protocol.candidates import Candidate
from protocol.crypto import Identity
from protocol.errors import (
    ErrorCode,
    MeshError,
    NotConnectedError,
    PeerUnreachableError,
)
from protocol.factories import VecLike, to_vec3
from protocol.messages.auth import DisconnectMessage
from protocol.messages.base import BaseMessage, Handler, MessageType
from protocol.messages.chat import ChatMessage, FactionChatMessage
from protocol.messages.combat import (
    ActionType,
    CombatActionMessage,
)
from protocol.messages.location import (
    LocationUpdateMessage,
    MoveMessage,
    PlayerLeftAreaMessage,
    PositionUpdateMessage,
)
from protocol.messages.party import (
    PartyAcceptMessage,
    PartyCreateMessage,
    PartyDeclineMessage,
    PartyDisbandMessage,
    PartyKickMessage,
    PartyLeaveMessage,
    PartyUpdateMessage,
)
from protocol.messages.peer import PeerInfoMessage, RelayMessage
from protocol.messages.trade import (
    TradeAcceptMessage,
    TradeDeclineMessage,
    TradeUpdateMessage,
)
from protocol.messages.world import ShardCaptureMessage
from protocol.rest import (
    CharacterOut,
    EventsOut,
    IceServersOut,
    LoginResponse,
    PartyOut,
    RegisterResponse,
    ShardsOut,
    StatusResponse,
    WorldMapOut,
    WorldStateOut,
)

__all__ = ["DEFAULT_SERVER_URL", "NetworkClient"]

A = TypeVar("A", bound=acks.AckDetails)

DEFAULT_SERVER_URL = "http://localhost:8888"
"""The seed's ``master_server_url``; ``SHARDS_SERVER_URL`` in the environment overrides it."""


class NetworkClient:
    """The seed's ``NetworkClient`` (see the module docstring).

    ``server_url``: the lobby (default ``SHARDS_SERVER_URL`` or
    ``http://localhost:8888``). ``p2p_host`` / ``p2p_port``: where the peer
    node's UDP socket binds (port default: ``SHARDS_P2P_PORT`` when set, else
    the node's own default; 0: any free port); ``p2p_advertise``: the
    ``address:port`` endpoints (IP literals) to publish instead of the bound
    one (NAT, wildcard binds); ``p2p_max_connections``: direct peers kept (area of interest
    first); ``p2p_auto_connect``: dial peers as soon as the lobby names them
    (else on first send); ``p2p_learn_reflexive``: learn the node's public address
    by STUN at select and register it as a candidate (default: unless
    ``p2p_advertise`` names what to publish). ``encryption_enabled`` / ``encryption_key``: the
    seed's Fernet layer over the lobby WebSocket (PBKDF2-SHA256, 100,000
    iterations); only used when the lobby offers it (``ws_encodings`` in
    ``/api/status``), otherwise :meth:`connect` refuses with
    :class:`~protocol.errors.ApiError` rather than send in the clear.
    ``reconnect``: the :class:`~mesh.client.socket.ReconnectPolicy` (seeded
    jitter). ``request_timeout``: REST calls and ACK waits. ``mesh_config``:
    node tunables. ``identity``: the node's Ed25519 identity (default: fresh).
    """

    def __init__(
        self,
        server_url: str | None = None,
        *,
        p2p_host: str = "127.0.0.1",
        p2p_port: int | None = None,
        p2p_max_connections: int = 10,
        p2p_advertise: Sequence[str] | None = None,
        p2p_auto_connect: bool = True,
        p2p_learn_reflexive: bool | None = None,
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
        self._tasks = BackgroundTasks()
        self._handlers = HandlerTable(self._tasks)
        self.state = ClientState()
        """The client's view of its game: character, party, trades, world, who is near."""
        self.session = LobbySession(
            self.server_url,
            on_message=self._on_lobby_message,
            on_lost=self._on_lobby_lost,
            reconnect=reconnect,
            heartbeat_interval=heartbeat_interval,
            request_timeout=request_timeout,
            encryption_enabled=encryption_enabled,
            encryption_key=encryption_key,
        )
        """The lobby half: login, REST, the WebSocket, ``status`` and ``account``."""
        self.peers = PeerSide(
            self.session,
            self.state,
            on_message=self._on_peer_message,
            settings=PeerSettings(
                host=p2p_host,
                port=p2p_port if p2p_port is not None else env_p2p_port(),
                max_connections=p2p_max_connections,
                advertise=tuple(p2p_advertise) if p2p_advertise is not None else None,
                auto_connect=p2p_auto_connect,
                learn_reflexive=p2p_learn_reflexive,
                mesh_config=mesh_config,
            ),
            identity=identity,
        )
        """The peer half: ``node``, ``identity``, ``ticket``, ``directory``."""
        self._guard: asyncio.Task[None] | None = None

    # -- session ------------------------------------------------------------------------------

    async def register(self, username: str, password: str) -> RegisterResponse:
        """Create an account (``POST /api/auth/register``); raises :class:`ApiError`."""
        return await self.session.register(username, password)

    async def connect(
        self, username: str, password: str, *, register: bool = False
    ) -> LoginResponse:
        """Log in (optionally registering first) and open the lobby WebSocket.

        Returns the login answer (``token``, ``account_id``, ``username``, ...).
        Raises :class:`ApiError` (``status``/``code`` of the lobby's answer, or
        ``status=0, code=unavailable`` when the lobby is unreachable,
        ``version_mismatch`` when it speaks an incompatible protocol version);
        a failed connect leaves nothing open.
        """
        login = await self.session.open(username, password, register=register)
        key = self.session.lobby_public_key
        assert key is not None  # noqa: S101 - open() read it
        self.peers.reset_directory(key, self.session.lobby_accepted_keys)
        if self._guard is None:
            self._guard = asyncio.create_task(self._close_if_abandoned(), name="mesh-client")
        return login

    async def disconnect(self, *, logout: bool = False) -> None:
        """Leave: say goodbye on the socket, close it and the peer node (idempotent).

        ``logout=True`` also revokes the session token (``POST /api/auth/logout``).
        Waits on the lobby at most a few seconds (the socket's ``CLOSE_TIMEOUT``, and the
        request timeout for a logout): a lobby that does not answer is left behind.
        """
        guard, self._guard = self._guard, None
        if guard is not None and guard is not asyncio.current_task():
            guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guard
        # first what would call the lobby on its own: after the session closed, a REST call
        # would open a new HTTP session that nothing closes
        await self.peers.stop_background()
        await self.session.close(logout=logout)
        await self.peers.close()
        self.state.reset()
        await self._tasks.cancel_all()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    @property
    def connected(self) -> bool:
        """True while the lobby WebSocket is open."""
        return self.session.connected

    @property
    def connection_state(self) -> SocketState:
        """``idle``, ``connecting``, ``connected``, ``reconnecting`` or ``closed``."""
        return self.session.connection_state

    async def wait_connection_state(self, state: SocketState, wait: float = 30.0) -> None:
        """Wait until the lobby connection is in ``state`` (TimeoutError after ``wait`` s)."""
        await self.session.wait_connection_state(state, wait)

    # -- characters ---------------------------------------------------------------------------

    @property
    def character(self) -> CharacterOut | None:
        """The selected character as last heard of (None before :meth:`select_character`)."""
        return self.state.character

    async def get_characters(self) -> list[CharacterOut]:
        """The account's characters (``id``, ``name``, ``faction``, ``location_id``, ...)."""
        characters = await self.session.characters()
        self.state.characters_listed(characters)
        return characters

    async def create_character(
        self, name: str, faction: str, character_class: str = "Warrior"
    ) -> CharacterOut:
        """Create a character; returns it."""
        character = await self.session.create_character(name, faction, character_class)
        self.state.character_created()
        return character

    async def delete_character(self, character_id: int) -> None:
        await self.session.delete_character(character_id)

    async def select_character(self, character_id: int) -> CharacterOut:
        """Select a character: start the peer node, register it, get the peer ticket.

        Returns the character. The lobby then names the peers at the
        character's location (``PEER_INFO``) and the client connects to them.
        """
        if self.session.phase != "open":
            raise NotConnectedError("not logged in: call connect() first")
        answer = await self.peers.select(int(character_id))
        self.state.select(answer.character)
        self.peers.adopt_known()
        return answer.character

    async def renew_ticket(self) -> None:
        """Renew our peer ticket now (it is renewed by itself at 80 % of its lifetime)."""
        await self.peers.renew()

    @property
    def node(self) -> PeerNode | None:
        """The peer node (None before :meth:`select_character`)."""
        return self.peers.node

    def connection_quality(self, target: int | str) -> ConnectionQuality | None:
        """How a connected player (character id or name) is reached right now: path in
        use (``"direct"`` or ``"relay"``), RTT, loss, bytes each way
        (:class:`~mesh.quality.ConnectionQuality`).

        None before :meth:`select_character`, or when no direct link nor the relay
        connects that player.
        """
        node = self.peers.node
        if node is None:
            return None
        if isinstance(target, int):
            return node.connection_quality(target)
        return next(
            (q for q in node.connection_qualities().values() if q.character_name == target),
            None,
        )

    def movement_available(self, target: int | str) -> bool:
        """True when :meth:`send_position_update` reaches that player (character id or name).

        Position updates travel only over a peer connection (direct, or QUIC over
        TURN); a player reached only through the lobby relay (UDP blocked on
        either side, or no path opened yet) still gets whispers and party chat,
        but not our movement, and we do not get theirs. False before
        :meth:`select_character` and for a player we know nothing of.
        See :meth:`mesh.node.PeerNode.movement_available`.
        """
        node = self.peers.node
        if node is None:
            return False
        if isinstance(target, int):
            return node.movement_available(target)
        known = self.state.nearby.by_name(target)
        if known is not None:
            return node.movement_available(known.character_id)
        party = self.state.party
        member = next(
            (
                m
                for m in (party.members if party is not None else ())
                if m.character_name.casefold() == target.casefold()
            ),
            None,
        )
        return member is not None and node.movement_available(member.character_id)

    def connection_qualities(self) -> dict[int, ConnectionQuality]:
        """:meth:`connection_quality` of every connected player, by character id."""
        node = self.peers.node
        if node is None:
            return {}
        return {q.character_id: q for q in node.connection_qualities().values()}

    @property
    def ticket(self) -> str | None:
        """Our lobby-signed peer ticket (None before :meth:`select_character`)."""
        return self.peers.ticket

    def ticket_renewal_scheduled(self) -> bool:
        """True while the next ticket renewal is scheduled."""
        return self.peers.renewal_due

    # -- handlers -----------------------------------------------------------------------------

    def register_handler(self, message_type: MessageType | str, handler: Handler) -> None:
        """Call ``handler(message)`` (sync or async) for every ``message_type`` message.

        Messages from the lobby WebSocket and from peers (whisper, party chat,
        movement, departures) are dispatched alike. A handler's exception is
        logged and does not stop the others.
        """
        self._handlers.add(message_type, handler)

    def unregister_handler(self, message_type: MessageType | str, handler: Handler) -> None:
        self._handlers.remove(message_type, handler)

    def get_nearby_players(self, location_id: int | None = None) -> list[NearbyPlayer]:
        """Players at ``location_id`` (default: our location) as this client knows them."""
        return self.state.nearby.players(location_id)

    # -- chat ---------------------------------------------------------------------------------

    async def send_chat(self, content: str, channel: str = "global") -> str:
        """Global chat through the lobby; returns the message id (the echo keeps it)."""
        self.state.require_character()
        return await self.session.send(ChatMessage(content=content, channel=channel))

    async def send_faction_chat(self, content: str) -> str:
        """Chat to the own faction through the lobby; returns the message id."""
        self.state.require_character()
        return await self.session.send(FactionChatMessage(content=content))

    async def send_whisper(self, target: int | str, content: str) -> SendResult:
        """Whisper to a character (id or name), peer to peer; relay fallback sealed end to end.

        Resolves when the recipient acknowledged it. ``result.path`` is
        ``"direct"`` or ``"relay"``. Raises :class:`PeerUnreachableError` when
        the target is offline or nothing reached it in time.
        """
        node = self.peers.require_node()
        character_id = await self.peers.lookup(target)
        return await node.send_whisper(
            character_id, content, target_name=target if isinstance(target, str) else None
        )

    async def send_party_chat(self, content: str) -> PartySendResult:
        """Party chat to every other online member, peer to peer (relay fallback).

        Returns who acknowledged (and by which path) and who could not be
        reached; raises :class:`MeshError` (code ``not_in_party``) outside a party.
        """
        node = self.peers.require_node()
        me = self.state.require_character().id
        party = self._require_party()
        targets: list[int] = []
        failed: dict[int | str, MeshError] = {}
        for member in party.members:
            if member.character_id == me or not member.online:
                continue
            try:
                targets.append(await self.peers.lookup(member.character_id))
            except PeerUnreachableError as exc:
                failed[member.character_id] = exc
        result = await node.send_party_chat(targets, content, party_id=party.party_id)
        result.failed.update(failed)
        return result

    # -- movement -----------------------------------------------------------------------------

    async def send_move(
        self, to_location_id: int, from_location_id: int | None = None
    ) -> acks.MoveAck:
        """Move to a neighbouring location (validated by the lobby; see :meth:`get_world_map`).

        Returns the lobby's ACK (:class:`~protocol.acks.MoveAck`: ``location_id``,
        ``previous_location_id``); raises :class:`~protocol.errors.ApiError`
        (``invalid_move``, ...).
        """
        ack = await self._request(
            MoveMessage(to_location_id=to_location_id, from_location_id=from_location_id),
            acks.MoveAck,
        )
        moved = self.state.moved_to(ack.location_id)
        if moved is not None:
            self.peers.moved(moved)
        return ack

    async def send_position_update(
        self, position: VecLike, velocity: VecLike | None = None
    ) -> PositionUpdateMessage:
        """Queue our position (and velocity) for the peers nearby: QUIC datagrams, newest wins.

        It reaches only the players :meth:`movement_available` names: a player
        reached through the lobby relay alone does not get it (and nothing fails).
        """
        node = self.peers.require_node()
        location = self.state.require_character().location_id
        return node.send_position_update(
            to_vec3(position),
            to_vec3(velocity) if velocity is not None else None,
            location_id=location,
        )

    # -- combat and world ---------------------------------------------------------------------

    async def start_combat(self, *target_ids: int) -> acks.CombatStartAck:
        """Attack characters at our location; returns the ACK (``combat_id``, ``seed``)."""
        return await self._request(combat_start(target_ids), acks.CombatStartAck)

    async def send_combat_action(
        self,
        combat_id: str,
        action_type: ActionType,
        target_id: int | None = None,
        ability_name: str | None = None,
        item_id: int | None = None,
    ) -> acks.CombatActionAck:
        """A combat action, resolved by the lobby; returns the ACK (``combat_id``, ``round``)."""
        return await self._request(
            CombatActionMessage(
                combat_id=combat_id,
                action_type=action_type,
                target_id=target_id,
                ability_name=ability_name,
                item_id=item_id,
            ),
            acks.CombatActionAck,
        )

    async def capture_shard(self, shard_id: int) -> acks.ShardCaptureAck:
        """Try to capture a Crystal Shard at our location; returns the ACK (``shard_id``,
        ``faction``, ``current_reality``)."""
        return await self._request(ShardCaptureMessage(shard_id=shard_id), acks.ShardCaptureAck)

    async def get_world_state(self) -> WorldStateOut:
        """``GET /api/world/state``: ``current_reality``, ``shards``, ``faction_shards``, ..."""
        return await self.session.rest.call(WorldStateOut, "GET", "/api/world/state")

    async def get_world_map(self) -> WorldMapOut:
        """``GET /api/world/map``: every location, its ``neighbours`` (MOVE targets), shards
        and players online there."""
        return await self.session.rest.call(WorldMapOut, "GET", "/api/world/map")

    async def get_shards(self) -> ShardsOut:
        """``GET /api/world/shards``."""
        return await self.session.rest.call(ShardsOut, "GET", "/api/world/shards")

    async def get_world_events(self) -> EventsOut:
        """``GET /api/world/events`` (newest first)."""
        return await self.session.rest.call(EventsOut, "GET", "/api/world/events")

    async def get_ice_servers(self, *, refresh: bool = False) -> IceServersOut:
        """STUN servers and time-limited TURN credentials for the node (cached while fresh)."""
        return await self.peers.ice_servers(refresh=refresh)

    async def learn_candidates(self) -> list[Candidate]:
        """Learn our public (server-reflexive) address now by STUN over the node's socket
        and register it with the lobby; returns every candidate registered, best first.

        :meth:`select_character` starts this in the background; call it again when
        the network changed (Wi-Fi to mobile) so paired peers punch the new mapping.
        """
        return await self.peers.learn_candidates()

    async def candidates_learned(self) -> list[Candidate]:
        """Wait until the learning :meth:`select_character` started is done; our candidates."""
        return await self.peers.candidates_learned()

    async def get_status(self) -> StatusResponse:
        """``GET /api/status`` (no login needed)."""
        return await self.session.rest.call(StatusResponse, "GET", "/api/status", auth=False)

    # -- party --------------------------------------------------------------------------------

    @property
    def party(self) -> PartyUpdateMessage | None:
        """Our party (the last ``PARTY_UPDATE`` naming us), or None."""
        return self.state.party

    async def create_party(self, name: str | None = None) -> acks.PartyAck:
        """Create a party led by us; returns the ACK (``party_id``).

        Every party request returns its ACK (:class:`~protocol.acks.PartyAck`, with
        ``target_id`` for an invitation or a kick); the party itself arrives as
        ``PARTY_UPDATE`` (:attr:`party`).
        """
        return await self._request(PartyCreateMessage(name=name), acks.PartyAck)

    async def invite_to_party(self, target: int | str) -> acks.PartyTargetAck:
        """Invite a character (id or name) to our party; the ACK names it (``target_id``)."""
        party = self.state.party
        return await self._request(
            party_invite(target, party.party_id if party is not None else None),
            acks.PartyTargetAck,
        )

    async def accept_party_invite(self, party_id: str) -> acks.PartyAck:
        return await self._request(PartyAcceptMessage(party_id=party_id), acks.PartyAck)

    async def decline_party_invite(self, party_id: str, reason: str | None = None) -> acks.PartyAck:
        return await self._request(
            PartyDeclineMessage(party_id=party_id, reason=reason), acks.PartyAck
        )

    async def leave_party(self) -> acks.PartyAck:
        return await self._request(PartyLeaveMessage(party_id=self._party_id()), acks.PartyAck)

    async def kick_from_party(
        self, target_id: int, reason: str | None = None
    ) -> acks.PartyTargetAck:
        return await self._request(
            PartyKickMessage(party_id=self._party_id(), target_id=target_id, reason=reason),
            acks.PartyTargetAck,
        )

    async def disband_party(self) -> acks.PartyAck:
        self.state.require_character()
        party_id = self._require_party().party_id
        return await self._request(PartyDisbandMessage(party_id=party_id), acks.PartyAck)

    async def get_party(self, party_id: str | None = None) -> PartyOut:
        """``GET /api/party/{id}`` (default: our party)."""
        pid = party_id or self._party_id()
        if pid is None:
            raise MeshError("not in a party", code=ErrorCode.NOT_IN_PARTY)
        return await self.session.rest.call(PartyOut, "GET", f"/api/party/{pid}")

    # -- trade --------------------------------------------------------------------------------

    @property
    def trades(self) -> Mapping[str, TradeUpdateMessage]:
        """The last trade window (``TRADE_UPDATE``) of each unfinished trade, by id."""
        return self.state.trades

    async def request_trade(self, target: int | str) -> acks.TradeRequestAck:
        """Ask a character (id or name) to trade; returns the ACK (``trade_id``, ``target_id``).

        Every trade request returns its ACK (:class:`~protocol.acks.TradeAck`, with the
        window's ``version`` for an offer or a confirmation); the window itself arrives
        as ``TRADE_UPDATE`` (:attr:`trades`).
        """
        return await self._request(trade_request(target), acks.TradeRequestAck)

    async def accept_trade(self, trade_id: str) -> acks.TradeAck:
        return await self._request(TradeAcceptMessage(trade_id=trade_id), acks.TradeAck)

    async def decline_trade(self, trade_id: str, reason: str | None = None) -> acks.TradeAck:
        return await self._request(
            TradeDeclineMessage(trade_id=trade_id, reason=reason), acks.TradeAck
        )

    async def update_trade(
        self, trade_id: str, items: TradeItemsLike = (), gold: int = 0
    ) -> acks.TradeOfferAck:
        """Set our offer (replaces the previous one; clears both confirmations)."""
        return await self._request(
            TradeUpdateMessage(trade_id=trade_id, items=trade_items(items), gold=gold),
            acks.TradeOfferAck,
        )

    async def confirm_trade(
        self, trade_id: str, items: TradeItemsLike | None = None, gold: int | None = None
    ) -> acks.TradeOfferAck:
        """Confirm the trade window as last seen (``TRADE_UPDATE``); our offer is kept.

        ``items``/``gold`` default to our offer in that window; the window is sent
        along so the lobby refuses (``trade_invalid``) if it changed meanwhile.
        """
        me = self.state.require_character().id
        window = self.state.trades.get(trade_id)
        return await self._request(
            trade_confirmation(trade_id, me, window, items, gold), acks.TradeOfferAck
        )

    # -- routing ------------------------------------------------------------------------------

    async def _request(self, msg: BaseMessage, answer: type[A]) -> A:
        """A game request of our character, answered by ACK (its details as ``answer``) or
        ERROR (:class:`ApiError` with its code).

        ACK details that do not match ``answer`` are :class:`ApiError` ``unavailable`` (as
        a REST body that does not match its model), caused by the ``DecodeError``.
        """
        self.state.require_character()
        details = await self.session.request(msg)
        return read_body(answer, details, what=f"the ACK to {msg.type}")

    def _party_id(self) -> str | None:
        self.state.require_character()
        party = self.state.party
        return party.party_id if party is not None else None

    def _require_party(self) -> PartyUpdateMessage:
        party = self.state.party
        if party is None:
            raise MeshError("not in a party", code=ErrorCode.NOT_IN_PARTY)
        return party

    def _on_lobby_message(self, msg: BaseMessage) -> None:
        now = time.time()
        own = self.state.character
        others = own is None or getattr(msg, "character_id", None) != own.id
        observe = True
        if isinstance(msg, RelayMessage):
            self.peers.relayed(msg)
        elif isinstance(msg, PeerInfoMessage):
            # Our own entry, or one whose ticket does not verify, names no one near.
            observe = others and self.peers.peer_info(msg, now)
        elif isinstance(msg, PlayerLeftAreaMessage):
            self.peers.character_left(msg.character_id)
        elif isinstance(msg, LocationUpdateMessage) and others:
            self.peers.peer_moved(msg.character_id, msg.location_id)
        if observe:
            moved = self.state.observe(msg, now)
            if moved is not None:
                self.peers.moved(moved)
        self._handlers.dispatch(msg)

    def _on_peer_message(self, msg: BaseMessage) -> None:
        if isinstance(msg, PlayerLeftAreaMessage):
            # The lobby is the authority on areas; a dropped direct connection only
            # counts as a departure while the lobby cannot tell us.
            if self.connected or self.state.nearby.get(msg.character_id) is None:
                return
        self.state.observe(msg, time.time())
        self._handlers.dispatch(msg)

    def _on_lobby_lost(self) -> None:
        # The socket gave up (session ended, or reconnection attempts exhausted):
        # DISCONNECT handlers hear it; peer connections stay up.
        self._handlers.dispatch(DisconnectMessage(reason="lobby connection lost"))

    async def _close_if_abandoned(self) -> None:
        """Wait; if cancelled by anyone but :meth:`disconnect` (the loop is ending), disconnect."""
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            if self._guard is asyncio.current_task():
                self._guard = None
                await self.disconnect()
            raise
