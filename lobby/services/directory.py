"""The peer directory and the relay: who learns whose peer ticket and addresses, messages passed on.

Registration: a character selected with peer keys gets a lobby-signed ticket
(core ``POST /api/characters/select``; the ticket names no address); the
session keeps it with the node's candidates (its ``endpoints`` as host
candidates plus typed ``candidates``: host, srflx, relay, checked by
:func:`lobby.services.rendezvous.registered_candidates`).

Pairing: the directory hands a peer's candidates only to the peers it pairs
with it, and only between two registered nodes:

* ``location``: both stand at the same location;
* ``party``: both are members of one party, wherever they stand;
* ``whisper``: one asked to reach the other (``POST /api/peers/{id}/pair``);
  that pairing lasts ``whisper_pair_ttl`` seconds (each request renews it) or
  until either goes offline.

When a pair forms (a character comes online, arrives by ``MOVE``, joins a
party, asks for a whisper pairing, or re-selects: a ticket renewal, maybe with
new keys or candidates) the directory sends each side the other's
``PEER_INFO`` in the same step, both carrying the same fresh ``pairing_id``
and the ``pairing`` reason, so both nodes start punching within the same
moment. Moving apart unpairs: no further ``PEER_INFO`` (no address update)
reaches a peer no longer paired. ``PEER_INFO`` carries the character's
``level`` as the hub knows it. The entries live in memory only.

Several lobby processes (``--redis-url``): a character's ``PEER_INFO`` at a
location also reaches the registered players there on the other processes (through
the broker; each other process answers with its own players' entries), so location
pairs form whichever process holds each side (those cross-process introductions carry
no shared ``pairing_id``; party and whisper pairings stay per process). A REST lookup
of a player another process holds answers the identity alone, never its addresses.

REST: ``GET /api/peers/{character_id}`` and ``GET /api/peers?name=NAME`` return
one entry to any session with a selected character; the addresses
(``candidates``, ``endpoints``) only when the two are paired (``paired``),
else the identity alone. 404 when the character is offline or has no ticket.
``POST /api/peers/{character_id}/pair`` pairs on demand for a whisper (rate
limited per account, 429) and answers the full entry; the asker must have a
registered node online (409 ``conflict`` otherwise). ``GET /api/turn/credentials``
answers the STUN servers (the lobby's own first) and time-limited TURN
credentials (:func:`lobby.services.rendezvous.ice_servers`), rate limited.

Relay: a ``RELAY`` from a client is forwarded, payload untouched and never
stored, to the target character's live connection as ``RELAY`` with
``sender_id`` set from the sender's session. An offline target answers
``ERROR peer_unreachable`` (``ref_id`` = the relay's ``message_id``). Rate
limited per account (``relay_rate`` / ``relay_burst``); the payload size is
limited by the message model. :attr:`DirectoryService.relayed_messages` counts
forwarded envelopes (``relayed_messages`` in ``/api/status``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from lobby.broker import Audience
from lobby.connection import Connection
from lobby.context import ContextSlot, LobbyContext
from lobby.http.api import ApiRequest
from lobby.presence import Presence
from lobby.ratelimit import SharedRateLimiter
from lobby.services._common import acting_character, register_handler
from lobby.services.rendezvous import PairingBook, ice_servers, new_pairing_id
from lobby.sessions import Session
from lobby.storage import characters
from protocol.candidates import Candidate, endpoint_candidate
from protocol.candidates import PairingReason as Reason
from protocol.codec import serialize
from protocol.errors import ErrorCode, LobbyError
from protocol.messages import MessageType, PeerInfoMessage, RelayMessage
from protocol.messages.peer import MAX_PEER_ENDPOINTS
from protocol.rest import IceServersOut, PeerInfoOut

__all__ = ["DirectoryService", "PeerEntry", "PeerLookupQuery"]

log = logging.getLogger("lobby.directory")


@dataclass(frozen=True, slots=True)
class PeerEntry:
    """What the directory knows of one session's peer node."""

    ticket: str
    candidates: tuple[Candidate, ...]
    node_id: str | None
    public_key: str | None


class PeerLookupQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="character name (any case)")


class DirectoryService:
    """Peer registration, pairing pushes, peer lookups, ICE servers and the relay."""

    name = "directory"

    def __init__(self, *, relay_rate: float = 50.0, relay_burst: float = 200.0) -> None:
        self._relay_rate = relay_rate
        self._relay_burst = relay_burst
        self._slot = ContextSlot("the directory")
        self._limiter: SharedRateLimiter | None = None
        self._pair_limiter: SharedRateLimiter | None = None
        self._ice_limiter: SharedRateLimiter | None = None
        self._entries: dict[int, PeerEntry] = {}
        self._book = PairingBook(600.0)
        self.relayed_messages = 0

    # -- lifecycle --------------------------------------------------------------------

    async def setup(self, ctx: LobbyContext) -> None:
        self._slot.attach(ctx)
        s = ctx.settings
        self._limiter = SharedRateLimiter(
            "relay", self._relay_rate, self._relay_burst, ctx.clock, ctx.buckets
        )
        self._pair_limiter = SharedRateLimiter(
            "pair", s.pair_rate, s.pair_burst, ctx.clock, ctx.buckets
        )
        self._ice_limiter = SharedRateLimiter(
            "ice", s.ice_rate, s.ice_burst, ctx.clock, ctx.buckets
        )
        self._book = PairingBook(s.whisper_pair_ttl)
        register_handler(ctx, MessageType.RELAY, self.on_relay)
        ctx.hub.on_join(self._on_join)
        ctx.hub.on_leave(self._on_leave)
        ctx.hub.broker.on_notify("introduce", self._introduce_from_elsewhere)
        ctx.hub.broker.on_notify("pair", self._pair_from_elsewhere)
        ctx.api.route(
            "GET",
            "/api/peers/{character_id}",
            response_model=PeerInfoOut,
            summary="The directory entry of an online character (addresses only when paired)",
            description="Any session with a selected character may ask. The ticket and keys "
            "are always answered; `candidates` and `endpoints` only when the lobby pairs the "
            "asker with that character (same location, same party, or a whisper pairing: "
            "`paired`), else they are empty. 404 when the character is offline or has no "
            "peer ticket.",
            tags=("directory",),
            path_params={"character_id": "integer"},
            errors=(403, 404),
        )(self.get_peer)
        ctx.api.route(
            "GET",
            "/api/peers",
            query_model=PeerLookupQuery,
            response_model=PeerInfoOut,
            summary="The directory entry of an online character, by name (addresses when paired)",
            tags=("directory",),
            errors=(403, 404),
        )(self.find_peer)
        ctx.api.route(
            "POST",
            "/api/peers/{character_id}/pair",
            response_model=PeerInfoOut,
            summary="Pair with a character to whisper it: both get each other's PEER_INFO now",
            description="Pairs the asker's registered peer node with the character's for "
            "`whisper_pair_ttl` seconds (each call renews it). Both sides receive the other's "
            "PEER_INFO on the WebSocket in the same step with the same `pairing_id`; the "
            "answer is the target's full entry. 404: offline or no peer ticket; 409: the "
            "target is the asker's own character, or the asker has no registered node online "
            "(select with peer keys, connect the WebSocket); 429: too many pairings.",
            tags=("directory",),
            path_params={"character_id": "integer"},
            errors=(404, 409, 429),
        )(self.pair_peer)
        ctx.api.route(
            "GET",
            "/api/turn/credentials",
            response_model=IceServersOut,
            summary="STUN servers and time-limited TURN credentials for the peer node",
            description="STUN: the lobby's own responder first, then the TURN servers "
            "(which answer STUN too). TURN credentials follow the TURN REST API scheme "
            "(coturn use-auth-secret): username '<unix expiry>:<character id>', password "
            "base64(HMAC-SHA1(secret, username)), valid `turn_ttl` seconds. Without a "
            "configured TURN server the TURN fields are empty. Needs a selected character; "
            "429 when asked too often.",
            tags=("directory",),
            errors=(403, 429),
        )(self.turn_credentials)

    async def close(self) -> None:
        self._entries.clear()
        self._book.clear()
        self._slot.detach()

    # -- queries ------------------------------------------------------------------------

    def entry(self, presence: Presence) -> PeerEntry | None:
        return self._entries.get(presence.session_id)

    def peer_info(
        self,
        presence: Presence,
        *,
        pairing: Reason | None = None,
        pairing_id: str | None = None,
    ) -> PeerInfoMessage | None:
        """A fresh ``PEER_INFO`` for ``presence`` (None without a character or ticket).

        With ``pairing`` it carries the candidates (the recipient is paired with
        ``presence``); without, the identity alone.
        """
        entry = self._entries.get(presence.session_id)
        character = presence.character
        if entry is None or character is None:
            return None
        candidates = list(entry.candidates) if pairing is not None else []
        return PeerInfoMessage(
            character_id=character.id,
            character_name=character.name,
            ticket=entry.ticket,
            endpoints=[c.endpoint for c in candidates[:MAX_PEER_ENDPOINTS]],
            candidates=candidates,
            faction=character.faction,
            location_id=character.location_id,
            node_id=entry.node_id,
            public_key=entry.public_key,
            level=character.level,
            pairing=pairing,
            pairing_id=pairing_id,
        )

    def pairing_between(self, a: Presence, b: Presence) -> Reason | None:
        """Why ``a`` and ``b`` are paired now (None: they are not).

        Only two different characters that both have a registered node pair.
        """
        ac, bc = a.character, b.character
        if ac is None or bc is None or ac.id == bc.id or a is b:
            return None
        if a.session_id not in self._entries or b.session_id not in self._entries:
            return None
        if ac.location_id == bc.location_id:
            return Reason.LOCATION
        parties = self._slot.ctx.services.parties
        if parties is not None and bc.id in parties.member_ids_of(ac.id):
            return Reason.PARTY
        if self._book.whispering(ac.id, bc.id, now=self._slot.ctx.clock()) is not None:
            return Reason.WHISPER
        return None

    # -- pushes -------------------------------------------------------------------------

    def pair(
        self, a: Presence, b: Presence, reason: Reason, pairing_id: str | None = None
    ) -> str | None:
        """Send ``a`` the ``PEER_INFO`` of ``b`` and ``b`` that of ``a``, in the same step.

        Both carry ``reason`` and one pairing id (``pairing_id``, else a fresh
        one; returned). None when one side has no registered node, and then
        nothing is sent.
        """
        if a.character is None or b.character is None:
            return None
        pairing_id = pairing_id or new_pairing_id()
        to_b = self.peer_info(a, pairing=reason, pairing_id=pairing_id)
        to_a = self.peer_info(b, pairing=reason, pairing_id=pairing_id)
        if to_a is None or to_b is None:
            return None
        hub = self._slot.ctx.hub
        hub.send_to_session(a.session_id, to_a)
        hub.send_to_session(b.session_id, to_b)
        return pairing_id

    def introduce(self, presence: Presence) -> int:
        """Pair ``presence`` with every registered node at its location (2 messages a pair)."""
        me = presence.character
        if me is None or presence.session_id not in self._entries:
            return 0
        sent = 0
        for other in self._slot.ctx.hub.presences():
            oc = other.character
            if other is presence or oc is None or oc.location_id != me.location_id:
                continue
            if oc.id != me.id and self.pair(presence, other, Reason.LOCATION) is not None:
                sent += 2
        broker = self._slot.ctx.hub.broker
        if broker.distributed:
            mine = self.peer_info(presence, pairing=Reason.LOCATION)
            if mine is not None:
                here = Audience.location(me.location_id, exclude_character=me.id)
                broker.forward(here, self._encoded(mine))
            broker.notify("introduce", f"{presence.session_id}|{me.location_id}|{me.id}")
        return sent

    def _introduce_from_elsewhere(self, data: str) -> None:
        """Another process introduced a player at a location: send it our registered
        players' entries there (through the broker, to the process holding its session)."""
        ctx = self._slot.current
        if ctx is None:
            return
        session_id, location_id, character_id = (int(x) for x in data.split("|"))
        to = Audience.session(session_id)
        for other in ctx.hub.presences():
            oc = other.character
            if oc is None or oc.location_id != location_id or oc.id == character_id:
                continue
            info = self.peer_info(other, pairing=Reason.LOCATION)
            if other.online and info is not None:
                ctx.hub.broker.forward(to, self._encoded(info))

    def pair_elsewhere(
        self, presence: Presence, character_id: int, reason: Reason, pairing_id: str | None = None
    ) -> str | None:
        """Pair ``presence`` (held here) with ``character_id``, held by another lobby process.

        Our ``PEER_INFO`` goes, with the request, to the process holding the other
        side; that one hands it to its player and sends ours its player's, both with
        ``reason`` and one pairing id (returned; None when ``presence`` has no node).
        A pairing the other side cannot take (no node, gone meanwhile) sends nothing.
        """
        me = presence.character
        if me is None:
            return None
        pairing_id = pairing_id or new_pairing_id()
        mine = self.peer_info(presence, pairing=reason, pairing_id=pairing_id)
        if mine is None:
            return None
        request = [presence.session_id, me.id, character_id, reason.value, self._encoded(mine)]
        self._slot.ctx.hub.broker.notify("pair", json.dumps(request))
        return pairing_id

    def _pair_from_elsewhere(self, data: str) -> None:
        """Another process asked to pair one of its players with one of ours
        (:meth:`pair_elsewhere`): give ours its entry, send it ours."""
        ctx = self._slot.current
        if ctx is None:
            return
        session_id, asker_id, character_id, reason_value, theirs = json.loads(data)
        p = ctx.hub.presence_of_character(int(character_id))
        if p is None or not p.online or p.character is None:
            return
        reason = Reason(reason_value)
        asked = PeerInfoMessage.model_validate_json(theirs)
        pairing_id = asked.pairing_id
        mine = self.peer_info(p, pairing=reason, pairing_id=pairing_id)
        if mine is None or pairing_id is None:
            return
        if reason is Reason.WHISPER:  # renewed with ours, like one asked for here
            self._book.whisper(
                p.character.id, int(asker_id), now=ctx.clock(), pairing_id=pairing_id
            )
        # through the stream like every push (cursor-stamped, replayed to a resume)
        ctx.hub.send_to_session(p.session_id, asked)
        ctx.hub.broker.forward(Audience.session(int(session_id)), self._encoded(mine))

    def _encoded(self, msg: PeerInfoMessage) -> str:
        msg.timestamp = self._slot.ctx.clock()
        return serialize(msg)

    def introduce_members(self, character_ids: Iterable[int], *, focus: int | None = None) -> int:
        """Pair every two online members of ``character_ids`` (a party).

        With ``focus`` (a character id), only the pairs that include that character.
        """
        hub = self._slot.ctx.hub
        present = []
        elsewhere = []
        for cid in dict.fromkeys(character_ids):
            p = hub.presence_of_character(cid)
            if p is not None and p.online:
                present.append(p)
            elif hub.online_elsewhere(cid):
                elsewhere.append(cid)
        sent = 0
        for p in present:  # each pair of a member here and one on another process, once
            for cid in elsewhere:
                if p.character is None or (
                    focus is not None and focus not in (p.character.id, cid)
                ):
                    continue
                here = hub.broker.location_elsewhere(cid) == p.character.location_id
                if self.pair_elsewhere(p, cid, Reason.LOCATION if here else Reason.PARTY):
                    sent += 1
        for i, p in enumerate(present):
            for q in present[i + 1 :]:
                if p.character is None or q.character is None:
                    continue
                if focus is not None and focus not in (p.character.id, q.character.id):
                    continue
                reason = Reason.PARTY
                if p.character.location_id == q.character.location_id:
                    reason = Reason.LOCATION
                if self.pair(p, q, reason) is not None:
                    sent += 2
        return sent

    # -- REST -----------------------------------------------------------------------------

    async def get_peer(self, req: ApiRequest) -> PeerInfoOut:
        self._require_selected(req)
        character_id = req.path_int("character_id")
        p = req.ctx.hub.presence_of_character(character_id)
        if p is None and (elsewhere := await self._entry_elsewhere(character_id)) is not None:
            return elsewhere
        return self._out(req, p, character_id)

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
        return self._out(req, found, name)

    async def _entry_elsewhere(
        self, character_id: int, *, paired: Reason | None = None, pairing_id: str | None = None
    ) -> PeerInfoOut | None:
        """The entry of a character another lobby process holds, from its stored session:
        its addresses only when ``paired`` (a REST lookup alone pairs nobody)."""
        ctx = self._slot.ctx
        session_id = ctx.hub.broker.session_elsewhere(character_id)
        if session_id is None:
            return None
        session = await ctx.sessions.get(session_id)
        info: dict[str, Any] | None = session.peer_info if session is not None else None
        character = await ctx.characters.get(character_id)
        if not info or not info.get("ticket") or character is None:
            return None
        candidates = list(_stored_candidates(info)) if paired is not None else []
        return PeerInfoOut(
            character_id=character.id,
            character_name=character.name,
            ticket=str(info["ticket"]),
            endpoints=[c.endpoint for c in candidates[:MAX_PEER_ENDPOINTS]],
            candidates=candidates,
            faction=character.faction,
            location_id=character.location_id,
            node_id=info.get("peer_id"),
            public_key=info.get("public_key"),
            level=character.level,
            pairing=paired,
            pairing_id=pairing_id,
            paired=paired is not None,
        )

    async def pair_peer(self, req: ApiRequest) -> PeerInfoOut:
        ctx = req.ctx
        session = self._require_selected(req)
        character_id = req.path_int("character_id")
        assert self._pair_limiter is not None  # noqa: S101 - set by setup
        wait = await self._pair_limiter.hit(
            session.account_id
        )  # before any answer about the target
        if wait > 0:
            raise LobbyError(
                "pairing too fast",
                code=ErrorCode.RATE_LIMITED,
                details={"retry_after": round(wait, 3)},
            )
        if session.character_id == character_id:
            raise LobbyError("that is your own character", code=ErrorCode.CONFLICT)
        target = ctx.hub.presence_of_character(character_id)
        elsewhere = target is None and ctx.hub.online_elsewhere(character_id)
        if not elsewhere and (
            target is None or not target.online or target.session_id not in self._entries
        ):
            raise self._not_found(character_id)
        me = ctx.hub.presence(session.id)
        if me is None or me.character is None or not me.online or session.id not in self._entries:
            raise LobbyError(
                "your peer node is not registered: select with peer keys, connect the WebSocket",
                code=ErrorCode.CONFLICT,
            )
        pairing_id = self._book.whisper(me.character.id, character_id, now=ctx.clock())
        if target is None:  # held by another lobby process: pair through it
            reason = self._reason_elsewhere(me, character_id)
            entry = await self._entry_elsewhere(character_id, paired=reason, pairing_id=pairing_id)
            if entry is None:
                raise self._not_found(character_id)
            self.pair_elsewhere(me, character_id, reason, pairing_id)
            return entry
        reason = self.pairing_between(me, target) or Reason.WHISPER
        self.pair(me, target, reason, pairing_id)
        info = self.peer_info(target, pairing=reason, pairing_id=pairing_id)
        if info is None:  # pragma: no cover - both entries were checked above
            raise self._not_found(character_id)
        return self._rest(info)

    async def turn_credentials(self, req: ApiRequest) -> IceServersOut:
        session = self._require_selected(req)
        assert self._ice_limiter is not None  # noqa: S101 - set by setup
        wait = await self._ice_limiter.hit(session.account_id)
        if wait > 0:
            raise LobbyError(
                "asking for TURN credentials too often",
                code=ErrorCode.RATE_LIMITED,
                details={"retry_after": round(wait, 3)},
            )
        assert session.character_id is not None  # noqa: S101 - checked by _require_selected
        return ice_servers(
            req.ctx.settings,
            character_id=session.character_id,
            now=req.ctx.clock(),
            stun_host=req.request.url.host,
            stun_port=req.ctx.stun_port,
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
        candidates) and, if it has one, pairs it again with everyone it is
        paired with (location, party, live whisper pairings): each gets the new
        entry, and it gets theirs. Returns the number of messages queued.
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
            candidates=_stored_candidates(info),
            node_id=info.get("peer_id"),
            public_key=info.get("public_key"),
        )
        self._entries[presence.session_id] = entry
        return entry

    def _introduce_everywhere(self, presence: Presence) -> int:
        """Pair with the nodes at its location, its party and its live whisper partners."""
        sent = self.introduce(presence)
        me = presence.character
        if me is None:
            return sent
        ctx = self._slot.ctx
        parties = ctx.services.parties
        members = parties.member_ids_of(me.id) if parties is not None else []
        if members:
            sent += self.introduce_members(members, focus=me.id)
        for partner in self._book.whisper_partners(me.id, now=ctx.clock()):
            other = ctx.hub.presence_of_character(partner)
            if other is None and partner not in members and ctx.hub.online_elsewhere(partner):
                pairing_id = self._book.whispering(me.id, partner, now=ctx.clock())
                reason = self._reason_elsewhere(presence, partner)
                if self.pair_elsewhere(presence, partner, reason, pairing_id) is not None:
                    sent += 1
                continue
            if other is None or other.character is None or partner in members:
                continue
            if other.character.location_id == me.location_id:
                continue  # paired by location above
            pairing_id = self._book.whispering(me.id, partner, now=ctx.clock())
            if self.pair(presence, other, Reason.WHISPER, pairing_id) is not None:
                sent += 2
        return sent

    async def _on_leave(self, presence: Presence) -> None:
        self._entries.pop(presence.session_id, None)
        if presence.character is not None:
            self._book.forget(presence.character.id)

    # -- helpers --------------------------------------------------------------------------

    def _reason_elsewhere(self, presence: Presence, character_id: int) -> Reason:
        """Why ``presence`` is paired with ``character_id`` on another process when it
        asked to whisper it: the same location, the same party, else the whisper."""
        ctx = self._slot.ctx
        me = presence.character
        if me is not None and ctx.hub.broker.location_elsewhere(character_id) == me.location_id:
            return Reason.LOCATION
        parties = ctx.services.parties
        if me is not None and parties is not None and character_id in parties.member_ids_of(me.id):
            return Reason.PARTY
        return Reason.WHISPER

    def _out(self, req: ApiRequest, p: Presence | None, key: object) -> PeerInfoOut:
        """``p``'s entry as the asker may see it: addresses only when the two are paired."""
        if p is None or not p.online or p.character is None:
            raise self._not_found(key)
        asker = req.ctx.hub.presence(req.require_session().id)
        reason = self.pairing_between(asker, p) if asker is not None else None
        pairing_id = None  # a whisper pairing keeps its id; location and party ones are moments
        if reason is Reason.WHISPER and asker is not None and asker.character is not None:
            pairing_id = self._book.whispering(
                asker.character.id, p.character.id, now=req.ctx.clock()
            )
        info = self.peer_info(p, pairing=reason, pairing_id=pairing_id)
        if info is None:
            raise self._not_found(key)
        return self._rest(info)

    @staticmethod
    def _rest(info: PeerInfoMessage) -> PeerInfoOut:
        data = info.model_dump(include=set(PeerInfoOut.model_fields), mode="json")
        return PeerInfoOut.model_validate({**data, "paired": info.pairing is not None})

    @staticmethod
    def _not_found(key: object) -> LobbyError:
        return LobbyError(
            "that character is offline or has no peer ticket",
            code=ErrorCode.NOT_FOUND,
            details={"character": str(key)[:64]},
        )

    @staticmethod
    def _require_selected(req: ApiRequest) -> Session:
        session = req.require_session()
        if session.character_id is None:
            raise LobbyError("select a character first", code=ErrorCode.NO_CHARACTER)
        return session


def _stored_candidates(info: dict[str, Any]) -> tuple[Candidate, ...]:
    """The candidates a session stored at select (``endpoints`` alone: a lobby before 1.1)."""
    stored = info.get("candidates")
    try:
        if isinstance(stored, list):
            return tuple(Candidate.model_validate(c) for c in stored)
        return tuple(endpoint_candidate(str(e)) for e in info.get("endpoints") or ())
    except (ValidationError, ValueError):
        log.warning("a stored peer entry has unreadable addresses; it is kept without them")
        return ()
