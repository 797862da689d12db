"""The peer directory and the relay: who learns whose peer ticket, and messages passed on.

Directory: a character selected with peer keys gets a lobby-signed ticket (core
``POST /api/characters/select``); the session keeps it with the node's endpoints.
When such a character comes online at a location (WS connected after select, or
select while connected) or arrives there by ``MOVE``, it receives one
``PEER_INFO`` per other online character there that has a ticket, and each of
them receives its ``PEER_INFO``. Party members get each other's ``PEER_INFO`` on
every party change, wherever they stand. The entries live in memory only. With
several lobby processes, an introduction also reaches the players at the location
on the other processes (its ``PEER_INFO`` through the broker, and a request that
each process answers with its own players' entries), so peers find each other
whichever process holds them (party introductions stay per process).
Selecting the same character again (the client renews its ticket, maybe with
new keys or endpoints) refreshes the entry from the session and re-introduces
it the same way (core select calls :meth:`DirectoryService.reselected`).
``PEER_INFO`` carries the character's ``level`` as the hub knows it.

REST: ``GET /api/peers/{character_id}`` and ``GET /api/peers?name=NAME`` return
one entry (404 when the character is offline or has no ticket), also of a player
another lobby process holds (from its stored session); any session with a selected
character may ask.

Relay: a ``RELAY`` from a client is forwarded, payload untouched and never
stored, to the target character's live connection as ``RELAY`` with
``sender_id`` set from the sender's session. An offline target answers
``ERROR peer_unreachable`` (``ref_id`` = the relay's ``message_id``). Rate
limited per account (``relay_rate`` / ``relay_burst``); the payload size is
limited by the message model. :attr:`DirectoryService.relayed_messages` counts
forwarded envelopes (``relayed_messages`` in ``/api/status``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from lobby.broker import Audience
from lobby.connection import Connection
from lobby.context import ContextSlot, LobbyContext
from lobby.http.api import ApiRequest
from lobby.hub import Presence
from lobby.ratelimit import SharedRateLimiter
from lobby.services._common import acting_character, register_handler
from lobby.storage import characters
from protocol.codec import serialize
from protocol.errors import ErrorCode, LobbyError
from protocol.messages import MessageType, PeerInfoMessage, RelayMessage
from protocol.rest import PeerInfoOut

__all__ = ["DirectoryService", "PeerEntry", "PeerLookupQuery"]

log = logging.getLogger("lobby.directory")


@dataclass(frozen=True, slots=True)
class PeerEntry:
    """What the directory knows of one session's peer node."""

    ticket: str
    endpoints: tuple[str, ...]
    node_id: str | None
    public_key: str | None


class PeerLookupQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="character name (any case)")


class DirectoryService:
    """Peer directory pushes, peer lookups and the relay."""

    name = "directory"

    def __init__(self, *, relay_rate: float = 50.0, relay_burst: float = 200.0) -> None:
        self._relay_rate = relay_rate
        self._relay_burst = relay_burst
        self._slot = ContextSlot("the directory")
        self._limiter: SharedRateLimiter | None = None
        self._entries: dict[int, PeerEntry] = {}
        self.relayed_messages = 0

    # -- lifecycle --------------------------------------------------------------------

    async def setup(self, ctx: LobbyContext) -> None:
        self._slot.attach(ctx)
        self._limiter = SharedRateLimiter(
            "relay", self._relay_rate, self._relay_burst, ctx.clock, ctx.buckets
        )
        register_handler(ctx, MessageType.RELAY, self.on_relay)
        ctx.hub.broker.on_notify("introduce", self._introduce_from_elsewhere)
        ctx.hub.on_join(self._on_join)
        ctx.hub.on_leave(self._on_leave)
        ctx.api.route(
            "GET",
            "/api/peers/{character_id}",
            response_model=PeerInfoOut,
            summary="The directory entry (ticket, endpoints) of an online character",
            tags=("directory",),
            path_params={"character_id": "integer"},
            errors=(403, 404),
        )(self.get_peer)
        ctx.api.route(
            "GET",
            "/api/peers",
            query_model=PeerLookupQuery,
            response_model=PeerInfoOut,
            summary="The directory entry of an online character, by name",
            tags=("directory",),
            errors=(403, 404),
        )(self.find_peer)

    async def close(self) -> None:
        self._entries.clear()
        self._slot.detach()

    # -- queries ------------------------------------------------------------------------

    def entry(self, presence: Presence) -> PeerEntry | None:
        return self._entries.get(presence.session_id)

    def peer_info(self, presence: Presence) -> PeerInfoMessage | None:
        """A fresh ``PEER_INFO`` for ``presence`` (None without a character or ticket)."""
        entry = self._entries.get(presence.session_id)
        character = presence.character
        if entry is None or character is None:
            return None
        return PeerInfoMessage(
            character_id=character.id,
            character_name=character.name,
            ticket=entry.ticket,
            endpoints=list(entry.endpoints),
            faction=character.faction,
            location_id=character.location_id,
            node_id=entry.node_id,
            public_key=entry.public_key,
            level=character.level,
        )

    # -- pushes -------------------------------------------------------------------------

    def introduce(self, presence: Presence) -> int:
        """Exchange ``PEER_INFO`` between ``presence`` and everyone at its location."""
        ctx = self._slot.ctx
        me = presence.character
        if me is None:
            return 0
        mine = self.peer_info(presence)
        sent = 0
        for other in ctx.hub.presences():
            oc = other.character
            if other is presence or oc is None or oc.location_id != me.location_id:
                continue
            if oc.id == me.id:
                continue
            theirs = self.peer_info(other)
            if theirs is not None:
                sent += ctx.hub.send_to_session(presence.session_id, theirs)
            if mine is not None:
                sent += ctx.hub.send_to_session(other.session_id, mine.model_copy())
        broker = ctx.hub.broker
        if broker.distributed:
            if mine is not None:
                here = Audience.location(me.location_id, exclude_character=me.id)
                broker.forward(here, self._encoded(mine))
            broker.notify("introduce", f"{presence.session_id}|{me.location_id}|{me.id}")
        return sent

    def _introduce_from_elsewhere(self, data: str) -> None:
        """Another process introduced a player at a location: send it our players' entries
        there (through the broker, to the process that holds its session)."""
        ctx = self._slot.current
        if ctx is None:
            return
        session_id, location_id, character_id = (int(x) for x in data.split("|"))
        to = Audience.session(session_id)
        for other in ctx.hub.presences():
            oc = other.character
            if oc is None or oc.location_id != location_id or oc.id == character_id:
                continue
            if other.online and (info := self.peer_info(other)) is not None:
                ctx.hub.broker.forward(to, self._encoded(info))

    def _encoded(self, msg: PeerInfoMessage) -> str:
        msg.timestamp = self._slot.ctx.clock()
        return serialize(msg)

    def introduce_members(self, character_ids: Iterable[int], *, focus: int | None = None) -> int:
        """Send each online member of ``character_ids`` the ``PEER_INFO`` of every other.

        With ``focus`` (a character id), only the pairs that include that character.
        """
        ctx = self._slot.ctx
        present = []
        for cid in dict.fromkeys(character_ids):
            p = ctx.hub.presence_of_character(cid)
            if p is not None and p.online:
                present.append(p)
        sent = 0
        for p in present:
            for q in present:
                if q is p or q.character is None or p.character is None:
                    continue
                if q.character.id == p.character.id:
                    continue
                if focus is not None and focus not in (p.character.id, q.character.id):
                    continue
                info = self.peer_info(q)
                if info is not None:
                    sent += ctx.hub.send_to_session(p.session_id, info)
        return sent

    # -- REST -----------------------------------------------------------------------------

    async def get_peer(self, req: ApiRequest) -> PeerInfoOut:
        self._require_selected(req)
        character_id = req.path_int("character_id")
        p = req.ctx.hub.presence_of_character(character_id)
        if p is None and (elsewhere := await self._entry_elsewhere(character_id)) is not None:
            return elsewhere
        return self._out(p, character_id)

    async def find_peer(self, req: ApiRequest) -> PeerInfoOut:
        self._require_selected(req)
        name = req.query_as(PeerLookupQuery).name.strip().casefold()
        found = None
        for p in req.ctx.hub.presences():
            if p.character is not None and p.character.name.casefold() == name:
                found = p
                break
        if found is None and req.ctx.hub.broker.distributed:
            async with req.ctx.db.read() as db:
                row = (
                    await db.execute(select(characters.c.id).where(characters.c.name_key == name))
                ).first()
            if row is not None and (elsewhere := await self._entry_elsewhere(int(row[0]))):
                return elsewhere
        return self._out(found, name)

    async def _entry_elsewhere(self, character_id: int) -> PeerInfoOut | None:
        """The entry of a character another lobby process holds, from its stored session."""
        ctx = self._slot.ctx
        session_id = ctx.hub.broker.session_elsewhere(character_id)
        if session_id is None:
            return None
        session = await ctx.sessions.get(session_id)
        info: dict[str, Any] | None = session.peer_info if session is not None else None
        character = await ctx.characters.get(character_id)
        if not info or not info.get("ticket") or character is None:
            return None
        return PeerInfoOut(
            character_id=character.id,
            character_name=character.name,
            ticket=str(info["ticket"]),
            endpoints=[str(e) for e in info.get("endpoints") or ()],
            faction=character.faction,
            location_id=character.location_id,
            node_id=info.get("peer_id"),
            public_key=info.get("public_key"),
            level=character.level,
        )

    # -- relay ----------------------------------------------------------------------------

    async def on_relay(self, conn: Connection, msg: RelayMessage) -> None:
        ctx = self._slot.ctx
        sender = acting_character(conn)
        assert self._limiter is not None  # noqa: S101
        wait = await self._limiter.hit(conn.account_id)
        if wait > 0:
            raise LobbyError(
                "relaying too fast",
                code=ErrorCode.RATE_LIMITED,
                details={"retry_after": round(wait, 3)},
            )
        relayed = RelayMessage(
            message_id=msg.message_id,
            target_id=msg.target_id,
            sender_id=sender.id,
            payload=msg.payload,
        )
        target = ctx.hub.presence_of_character(msg.target_id)
        if target is None and ctx.hub.online_elsewhere(msg.target_id):
            # held by another lobby process: the broker carries it there
            delivered = ctx.hub.send_to_character(msg.target_id, relayed)
        elif target is None or target.conn is None or not target.conn.is_open:
            raise LobbyError(
                f"character {msg.target_id} is not online",
                code=ErrorCode.PEER_UNREACHABLE,
                details={"target_id": msg.target_id},
            )
        else:
            delivered = target.conn.send(relayed)
        if not delivered:
            raise LobbyError(
                f"character {msg.target_id} cannot take messages now",
                code=ErrorCode.PEER_UNREACHABLE,
                details={"target_id": msg.target_id},
            )
        self.relayed_messages += 1
        ctx.metrics.relayed(len(msg.payload))

    # -- hooks ----------------------------------------------------------------------------

    async def reselected(self, session_id: int) -> int:
        """The session selected its current character again (e.g. a ticket renewal).

        Re-reads the entry from the session (new ticket, maybe new keys or
        endpoints) and, if it has one, exchanges ``PEER_INFO`` again with the
        players at its location and its online party members. Returns the
        number of messages queued.
        """
        ctx = self._slot.ctx
        presence = ctx.hub.presence(session_id)
        if presence is None or presence.character is None:
            return 0
        if await self._load_entry(presence) is None:
            return 0
        return self._introduce_everywhere(presence)

    async def _on_join(self, presence: Presence) -> None:
        await self._load_entry(presence)
        self._introduce_everywhere(presence)

    async def _load_entry(self, presence: Presence) -> PeerEntry | None:
        """The session's current directory entry (from its stored peer info), kept."""
        session = await self._slot.ctx.sessions.get(presence.session_id)
        info: dict[str, Any] | None = session.peer_info if session is not None else None
        if not info or not info.get("ticket"):
            self._entries.pop(presence.session_id, None)
            return None
        entry = PeerEntry(
            ticket=str(info["ticket"]),
            endpoints=tuple(str(e) for e in info.get("endpoints") or ()),
            node_id=info.get("peer_id"),
            public_key=info.get("public_key"),
        )
        self._entries[presence.session_id] = entry
        return entry

    def _introduce_everywhere(self, presence: Presence) -> int:
        """Exchange entries with the players at its location and with its party."""
        sent = self.introduce(presence)
        parties = self._slot.ctx.services.parties
        if parties is not None and presence.character is not None:
            members = parties.member_ids_of(presence.character.id)
            if members:
                sent += self.introduce_members(members, focus=presence.character.id)
        return sent

    async def _on_leave(self, presence: Presence) -> None:
        self._entries.pop(presence.session_id, None)

    # -- helpers --------------------------------------------------------------------------

    def _out(self, p: Presence | None, key: object) -> PeerInfoOut:
        info = self.peer_info(p) if p is not None and p.online else None
        if info is None:
            raise LobbyError(
                "that character is offline or has no peer ticket",
                code=ErrorCode.NOT_FOUND,
                details={"character": str(key)[:64]},
            )
        return PeerInfoOut.model_validate(
            info.model_dump(include=set(PeerInfoOut.model_fields), mode="json")
        )

    @staticmethod
    def _require_selected(req: ApiRequest) -> None:
        session = req.require_session()
        if session.character_id is None:
            raise LobbyError("select a character first", code=ErrorCode.NO_CHARACTER)
