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

What travels where (``docs/architecture.md``): chat, faction chat, MOVE, combat, party and
trade requests go to the lobby (WebSocket; requests are answered ``ACK`` or
``ERROR``); whispers and party chat go peer to peer over QUIC streams, falling
back to the lobby relay sealed end to end (the result says which path);
position updates go peer to peer as QUIC datagrams.

Errors: every call raises :class:`~protocol.errors.MeshError` subclasses only:

* :class:`~protocol.errors.ApiError` the lobby refused (``code``; ``status`` is
  the HTTP status for REST calls, 0 for WebSocket requests and for an
  unreachable lobby, then ``code=unavailable``);
* :class:`~protocol.errors.NotConnectedError` not logged in, no character
  selected, the lobby socket is down (reconnecting), or no answer in time;
* :class:`~protocol.errors.PeerUnreachableError` a whisper or party message
  reached nobody (no direct path, relay failed, or the target is offline).

Protocol errors the lobby reports asynchronously reach ``ERROR`` handlers as
:class:`~protocol.messages.system.ErrorMessage`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Self

from mesh.client.core import ClientCore
from mesh.node import PartySendResult, SendResult
from protocol.errors import ErrorCode, MeshError, PeerUnreachableError
from protocol.factories import VecLike, to_vec3
from protocol.messages.chat import ChatMessage, FactionChatMessage
from protocol.messages.combat import (
    ActionType,
    CombatActionMessage,
    Combatant,
    CombatStartMessage,
)
from protocol.messages.location import MoveMessage, PositionUpdateMessage
from protocol.messages.party import (
    PartyAcceptMessage,
    PartyCreateMessage,
    PartyDeclineMessage,
    PartyDisbandMessage,
    PartyInviteMessage,
    PartyKickMessage,
    PartyLeaveMessage,
)
from protocol.messages.trade import (
    TradeAcceptMessage,
    TradeDeclineMessage,
    TradeItem,
    TradeRequestMessage,
    TradeUpdateMessage,
)
from protocol.messages.world import ShardCaptureMessage

__all__ = ["NetworkClient", "TradeItemsLike"]

TradeItemsLike = Iterable[int] | Mapping[int, int] | Iterable[TradeItem]
"""Items to offer: item ids (one each), ``{item_id: quantity}``, or :class:`TradeItem`."""


class NetworkClient(ClientCore):
    """The seed's ``NetworkClient`` (see the module docstring).

    ``server_url``: the lobby (default ``SHARDS_SERVER_URL`` or
    ``http://localhost:8888``). ``p2p_host`` / ``p2p_port``: where the peer
    node's UDP socket binds (default port: ``SHARDS_P2P_PORT`` or the seed's
    9000; 0: any free port); ``p2p_advertise``: the
    ``host:port`` endpoints to publish instead of the bound one (NAT, wildcard
    binds); ``p2p_max_connections``: direct peers kept (area of interest
    first); ``p2p_auto_connect``: dial peers as soon as the lobby names them
    (else on first send). ``encryption_enabled`` / ``encryption_key``: the
    seed's Fernet layer over the lobby WebSocket (PBKDF2-SHA256, 100,000
    iterations); only used when the lobby offers it (``ws_encodings`` in
    ``/api/status``), otherwise :meth:`connect` refuses with
    :class:`~protocol.errors.ApiError` rather than send in the clear.
    ``reconnect``: the :class:`~mesh.client.socket.ReconnectPolicy` (seeded
    jitter). ``request_timeout``: REST calls and ACK waits. ``mesh_config``:
    node tunables. ``identity``: the node's Ed25519 identity (default: fresh).
    """

    async def __aenter__(self) -> Self:
        return self

    # -- chat ---------------------------------------------------------------------------

    async def send_chat(self, content: str, channel: str = "global") -> str:
        """Global chat through the lobby; returns the message id (the echo keeps it)."""
        self._require_character()
        return await self._send(ChatMessage(content=content, channel=channel))

    async def send_faction_chat(self, content: str) -> str:
        """Chat to the own faction through the lobby; returns the message id."""
        self._require_character()
        return await self._send(FactionChatMessage(content=content))

    async def send_whisper(self, target: int | str, content: str) -> SendResult:
        """Whisper to a character (id or name), peer to peer; relay fallback sealed end to end.

        Resolves when the recipient acknowledged it. ``result.path`` is
        ``"direct"`` or ``"relay"``. Raises :class:`PeerUnreachableError` when
        the target is offline or nothing reached it in time.
        """
        node = self._require_node()
        character_id = await self._lookup_peer(target)
        return await node.send_whisper(
            character_id, content, target_name=target if isinstance(target, str) else None
        )

    async def send_party_chat(self, content: str) -> PartySendResult:
        """Party chat to every other online member, peer to peer (relay fallback).

        Returns who acknowledged (and by which path) and who could not be
        reached; raises :class:`MeshError` (code ``not_in_party``) outside a party.
        """
        node = self._require_node()
        me = int(self._require_character()["id"])
        party = self.party
        if party is None:
            raise MeshError("not in a party", code=ErrorCode.NOT_IN_PARTY)
        targets: list[int] = []
        failed: dict[int | str, MeshError] = {}
        for member in party.members:
            if member.character_id == me or not member.online:
                continue
            try:
                targets.append(await self._lookup_peer(member.character_id))
            except PeerUnreachableError as exc:
                failed[member.character_id] = exc
        result = await node.send_party_chat(targets, content, party_id=party.party_id)
        result.failed.update(failed)
        return result

    # -- movement -----------------------------------------------------------------------

    async def send_move(
        self, to_location_id: int, from_location_id: int | None = None
    ) -> dict[str, Any]:
        """Move to a neighbouring location (validated by the lobby).

        Returns the lobby's ACK details (``location_id``, ``previous_location_id``);
        raises :class:`~protocol.errors.ApiError` (``invalid_move``, ...).
        """
        self._require_character()
        details = await self._request(
            MoveMessage(to_location_id=to_location_id, from_location_id=from_location_id)
        )
        self._own_location(int(details.get("location_id", to_location_id)))
        return details

    async def send_position_update(
        self, position: VecLike, velocity: VecLike | None = None
    ) -> PositionUpdateMessage:
        """Queue our position (and velocity) for the peers nearby: QUIC datagrams, newest wins."""
        node = self._require_node()
        location = int(self._require_character()["location_id"])
        return node.send_position(
            to_vec3(position),
            to_vec3(velocity) if velocity is not None else None,
            location_id=location,
        )

    # -- combat and world -------------------------------------------------------------------

    async def start_combat(self, *target_ids: int) -> dict[str, Any]:
        """Attack characters at our location; returns the ACK details (``combat_id``)."""
        self._require_character()
        msg = CombatStartMessage(
            combat_id="new",  # the lobby names the combat (ACK details.combat_id)
            participants=[
                Combatant(id=int(t), name=f"#{int(t)}", health=1, max_health=1) for t in target_ids
            ],
        )
        return await self._request(msg)

    async def send_combat_action(
        self,
        combat_id: str,
        action_type: ActionType,
        target_id: int | None = None,
        ability_name: str | None = None,
        item_id: int | None = None,
    ) -> dict[str, Any]:
        """A combat action, resolved by the lobby; returns the ACK details."""
        self._require_character()
        return await self._request(
            CombatActionMessage(
                combat_id=combat_id,
                action_type=action_type,
                target_id=target_id,
                ability_name=ability_name,
                item_id=item_id,
            )
        )

    async def capture_shard(self, shard_id: int) -> dict[str, Any]:
        """Try to capture a Crystal Shard at our location; returns the ACK details."""
        self._require_character()
        return await self._request(ShardCaptureMessage(shard_id=shard_id))

    async def get_world_state(self) -> dict[str, Any]:
        """``GET /api/world/state``: a dict with ``current_reality``, ``shards``, ..."""
        return dict(await self.rest.get("/api/world/state"))

    async def get_shards(self) -> Any:
        """``GET /api/world/shards``."""
        return await self.rest.get("/api/world/shards")

    async def get_world_events(self) -> Any:
        """``GET /api/world/events``."""
        return await self.rest.get("/api/world/events")

    async def get_status(self) -> dict[str, Any]:
        """``GET /api/status`` (no login needed)."""
        return dict(await self.rest.get("/api/status", auth=False))

    # -- party ----------------------------------------------------------------------------

    async def create_party(self, name: str | None = None) -> dict[str, Any]:
        """Create a party led by us; returns the ACK details (``party_id``)."""
        self._require_character()
        return await self._request(PartyCreateMessage(name=name))

    async def invite_to_party(self, target: int | str) -> dict[str, Any]:
        """Invite a character (id or name) to our party."""
        self._require_character()
        msg = (
            PartyInviteMessage(target_id=target)
            if isinstance(target, int)
            else PartyInviteMessage(target_name=target)
        )
        if self.party is not None:
            msg.party_id = self.party.party_id
        return await self._request(msg)

    async def accept_party_invite(self, party_id: str) -> dict[str, Any]:
        self._require_character()
        return await self._request(PartyAcceptMessage(party_id=party_id))

    async def decline_party_invite(
        self, party_id: str, reason: str | None = None
    ) -> dict[str, Any]:
        self._require_character()
        return await self._request(PartyDeclineMessage(party_id=party_id, reason=reason))

    async def leave_party(self) -> dict[str, Any]:
        self._require_character()
        party_id = self.party.party_id if self.party is not None else None
        return await self._request(PartyLeaveMessage(party_id=party_id))

    async def kick_from_party(self, target_id: int, reason: str | None = None) -> dict[str, Any]:
        self._require_character()
        party_id = self.party.party_id if self.party is not None else None
        return await self._request(
            PartyKickMessage(party_id=party_id, target_id=target_id, reason=reason)
        )

    async def disband_party(self) -> dict[str, Any]:
        self._require_character()
        if self.party is None:
            raise MeshError("not in a party", code=ErrorCode.NOT_IN_PARTY)
        return await self._request(PartyDisbandMessage(party_id=self.party.party_id))

    async def get_party(self, party_id: str | None = None) -> dict[str, Any]:
        """``GET /api/party/{id}`` (default: our party)."""
        pid = party_id or (self.party.party_id if self.party is not None else None)
        if pid is None:
            raise MeshError("not in a party", code=ErrorCode.NOT_IN_PARTY)
        return dict(await self.rest.get(f"/api/party/{pid}"))

    # -- trade ----------------------------------------------------------------------------

    async def request_trade(self, target: int | str) -> dict[str, Any]:
        """Ask a character (id or name) to trade; returns the ACK details (``trade_id``)."""
        self._require_character()
        msg = (
            TradeRequestMessage(target_id=target)
            if isinstance(target, int)
            else TradeRequestMessage(target_name=target)
        )
        return await self._request(msg)

    async def accept_trade(self, trade_id: str) -> dict[str, Any]:
        self._require_character()
        return await self._request(TradeAcceptMessage(trade_id=trade_id))

    async def decline_trade(self, trade_id: str, reason: str | None = None) -> dict[str, Any]:
        self._require_character()
        return await self._request(TradeDeclineMessage(trade_id=trade_id, reason=reason))

    async def update_trade(
        self, trade_id: str, items: TradeItemsLike = (), gold: int = 0
    ) -> dict[str, Any]:
        """Set our offer (replaces the previous one; clears both confirmations)."""
        self._require_character()
        return await self._request(
            TradeUpdateMessage(trade_id=trade_id, items=_trade_items(items), gold=gold)
        )

    async def confirm_trade(
        self, trade_id: str, items: TradeItemsLike | None = None, gold: int | None = None
    ) -> dict[str, Any]:
        """Confirm the trade window as last seen (``TRADE_UPDATE``); our offer is kept.

        ``items``/``gold`` default to our offer in that window; the window is sent
        along so the lobby refuses (``trade_invalid``) if it changed meanwhile.
        """
        me = int(self._require_character()["id"])
        window = self.trades.get(trade_id)
        offers = list(window.offers) if window is not None else []
        mine = next((o for o in offers if o.character_id == me), None)
        msg = TradeUpdateMessage(
            trade_id=trade_id,
            items=_trade_items(items) if items is not None else (mine.items if mine else []),
            gold=gold if gold is not None else (mine.gold if mine else 0),
            confirmed=True,
            offers=offers,
        )
        return await self._request(msg)


def _trade_items(items: TradeItemsLike) -> list[TradeItem]:
    if isinstance(items, Mapping):
        return [TradeItem(item_id=int(k), quantity=int(v)) for k, v in items.items()]
    out: list[TradeItem] = []
    for item in items:
        out.append(item if isinstance(item, TradeItem) else TradeItem(item_id=int(item)))
    return out
