"""Parties: the rules of :class:`~lobby.game.party.PartyBook`, persisted and pushed.

Every party lives in memory (the book) and in the ``parties`` table (its state as
JSON: members, leader, name, live invites), written before anything is
announced; a restart reloads it. The acting character is always the session's.

WebSocket requests (each answered ``ACK`` or ``ERROR`` with ``ref_id``):
``PARTY_CREATE(name?)`` (ACK ``details.party_id``), ``PARTY_INVITE(target_id |
target_name)``, ``PARTY_ACCEPT(party_id)``, ``PARTY_DECLINE(party_id)``,
``PARTY_LEAVE``, ``PARTY_KICK(target_id)`` (leader only), ``PARTY_DISBAND``
(leader only).

Pushes: ``PARTY_UPDATE`` (the whole party, with online flags and locations) to
every member - and to whoever was removed or invited - on every change;
``PARTY_INVITE`` (party_id, inviter) to the invitee; ``PARTY_KICK`` to the kicked;
``PARTY_DISBAND`` to the former members; each member's directory entry
(``PEER_INFO``) to the others. On joining, a player gets its party's
``PARTY_UPDATE`` and its live invites again.

Invites expire after ``rules.invite_ttl_seconds`` (``ERROR invite_expired``, read
from the injectable clock). An invite names the character and its account: only
that account's character accepts it (``ERROR forbidden`` otherwise), and deleting
the character withdraws its invites (members get a ``PARTY_UPDATE``), so a later
character can never inherit one. When the leader leaves, the longest-standing member
leads; when the leader goes offline for good (reconnect grace over), leadership
passes to the longest-standing member who is online, if any. Membership itself
survives going offline. Deleting a character removes it from its party.

REST (seed): ``GET /api/party/{party_id}`` (members and invitees only),
``POST /api/party/create|invite|leave``, plus ``accept``, ``decline``, ``kick``,
``disband`` and ``GET /api/party`` (one's own party).
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from lobby.characters import Character
from lobby.cluster_state import SharedState
from lobby.connection import Connection
from lobby.context import ContextSlot, LobbyContext
from lobby.game.messages import party_update_message
from lobby.game.party import Party, PartyBook, PartyChange
from lobby.http.api import ApiRequest
from lobby.hub import Hub
from lobby.presence import Presence
from lobby.services._common import ack, acting_character, character_named, register_handler
from lobby.services.models import PartyCreateIn, PartyIdIn, PartyInviteIn, PartyKickIn
from lobby.storage.game_schema import parties
from protocol.acks import PartyAck, PartyTargetAck
from protocol.errors import ErrorCode, LobbyError
from protocol.messages import (
    MessageType,
    PartyAcceptMessage,
    PartyCreateMessage,
    PartyDeclineMessage,
    PartyDisbandMessage,
    PartyInviteMessage,
    PartyKickMessage,
    PartyLeaveMessage,
)
from protocol.rest import OkOut, PartyOut

__all__ = ["PartyService"]

log = logging.getLogger("lobby.party")


class PartyService:
    """Parties of one lobby (the ``ctx.services.parties`` role)."""

    name = "parties"

    def __init__(self) -> None:
        self._slot = ContextSlot("the party service")
        self._state = SharedState("parties", self._reload)
        self.book: PartyBook | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def setup(self, ctx: LobbyContext) -> None:
        self._slot.attach(ctx)
        await self._load(ctx)
        for msg_type, handler in (
            (MessageType.PARTY_CREATE, self.on_create),
            (MessageType.PARTY_INVITE, self.on_invite),
            (MessageType.PARTY_ACCEPT, self.on_accept),
            (MessageType.PARTY_DECLINE, self.on_decline),
            (MessageType.PARTY_LEAVE, self.on_leave),
            (MessageType.PARTY_KICK, self.on_kick),
            (MessageType.PARTY_DISBAND, self.on_disband),
        ):
            register_handler(ctx, msg_type, handler)
        ctx.hub.on_join(self._on_join)
        ctx.hub.on_leave(self._on_presence_leave)
        self._state.attach(ctx.hub.broker, ctx.db)
        ctx.characters.delete_hooks.append(self._on_character_deleted)
        self._routes(ctx)

    async def close(self) -> None:
        await self._state.close()
        ctx = self._slot.detach()
        if ctx is not None and self._on_character_deleted in ctx.characters.delete_hooks:
            ctx.characters.delete_hooks.remove(self._on_character_deleted)

    # -- queries ------------------------------------------------------------------------

    def member_ids_of(self, character_id: int) -> list[int]:
        """The members of ``character_id``'s party (itself included), or []."""
        party = self._book().party_of(character_id)
        return party.member_ids() if party is not None else []

    def party_out(self, party: Party) -> PartyOut:
        ctx = self._context()
        snap = party.snapshot(ctx.clock())
        for member in snap["members"]:
            p = ctx.hub.presence_of_character(member["character_id"])
            member["online"] = _online(ctx.hub, member["character_id"])
            member["location_id"] = p.character.location_id if p and p.character else None
        return PartyOut.model_validate(snap)

    # -- operations (WS and REST) ---------------------------------------------------------

    async def create(self, me: int, my_name: str, name: str | None) -> PartyChange:
        async with self._state.change():
            change = self._book().create(
                me, my_name, now=self._now(), party_id=f"p{secrets.token_hex(6)}", name=name
            )
            await self._persist(change)
        self._announce(change)
        return change

    async def invite(
        self, me: int, target_id: int | None, target_name: str | None
    ) -> tuple[PartyChange, int]:
        target = await self._find_character(target_id, target_name)
        async with self._state.change():
            change = self._book().invite(
                me, target.id, account_id=target.account_id, now=self._now()
            )
            await self._persist(change)
        self._announce(change)
        return change, target.id

    async def accept(self, me: int, my_name: str, my_account: int, party_id: str) -> PartyChange:
        """Accept as character ``me`` of account ``my_account`` (the invite must name both)."""
        async with self._state.change():
            book = self._book()
            try:
                change = book.accept(me, my_name, party_id, account_id=my_account, now=self._now())
            except LobbyError as exc:
                if exc.code in (ErrorCode.INVITE_EXPIRED, ErrorCode.FORBIDDEN):  # invite dropped
                    party = book.get(party_id)
                    if party is not None:
                        await self._write(party)
                raise
            await self._persist(change)
            others = [p for p in book.parties() if p.party_id != party_id]
            for other in others:  # joining voided the invites to other parties
                await self._write(other)
        self._announce(change)
        return change

    async def decline(self, me: int, party_id: str) -> PartyChange:
        async with self._state.change():
            change = self._book().decline(me, party_id, now=self._now())
            await self._persist(change)
        self._announce(change)
        return change

    async def leave(self, me: int) -> PartyChange:
        async with self._state.change():
            change = self._book().leave(me, now=self._now())
            await self._persist(change)
        self._announce(change)
        return change

    async def kick(self, me: int, target_id: int) -> PartyChange:
        async with self._state.change():
            change = self._book().kick(me, target_id, now=self._now())
            await self._persist(change)
        self._announce(change)
        return change

    async def disband(self, me: int) -> PartyChange:
        async with self._state.change():
            change = self._book().disband(me, now=self._now())
            await self._persist(change)
        self._announce(change)
        return change

    # -- WebSocket ------------------------------------------------------------------------

    async def on_create(self, conn: Connection, msg: PartyCreateMessage) -> None:
        me = acting_character(conn)
        change = await self.create(me.id, me.name, msg.name)
        ack(conn, msg.message_id, PartyAck(party_id=change.party_id))

    async def on_invite(self, conn: Connection, msg: PartyInviteMessage) -> None:
        me = acting_character(conn)
        change, target = await self.invite(me.id, msg.target_id, msg.target_name)
        ack(conn, msg.message_id, PartyTargetAck(party_id=change.party_id, target_id=target))

    async def on_accept(self, conn: Connection, msg: PartyAcceptMessage) -> None:
        me = acting_character(conn)
        change = await self.accept(me.id, me.name, conn.session.account_id, msg.party_id)
        ack(conn, msg.message_id, PartyAck(party_id=change.party_id))

    async def on_decline(self, conn: Connection, msg: PartyDeclineMessage) -> None:
        me = acting_character(conn)
        change = await self.decline(me.id, msg.party_id)
        ack(conn, msg.message_id, PartyAck(party_id=change.party_id))

    async def on_leave(self, conn: Connection, msg: PartyLeaveMessage) -> None:
        me = acting_character(conn)
        change = await self.leave(me.id)
        ack(conn, msg.message_id, PartyAck(party_id=change.party_id))

    async def on_kick(self, conn: Connection, msg: PartyKickMessage) -> None:
        me = acting_character(conn)
        change = await self.kick(me.id, msg.target_id)
        ack(
            conn,
            msg.message_id,
            PartyTargetAck(party_id=change.party_id, target_id=msg.target_id),
        )

    async def on_disband(self, conn: Connection, msg: PartyDisbandMessage) -> None:
        me = acting_character(conn)
        change = await self.disband(me.id)
        ack(conn, msg.message_id, PartyAck(party_id=change.party_id))

    # -- REST -----------------------------------------------------------------------------

    def _routes(self, ctx: LobbyContext) -> None:
        route = ctx.api.route
        common: dict[str, Any] = {"tags": ("party",), "errors": (403, 404, 409)}
        route(
            "GET",
            "/api/party/{party_id}",
            response_model=PartyOut,
            summary="A party (members and invitees only)",
            path_params={"party_id": "string"},
            **common,
        )(self.rest_get)
        route("GET", "/api/party", response_model=PartyOut, summary="My party", **common)(
            self.rest_mine
        )
        route(
            "POST",
            "/api/party/create",
            request_model=PartyCreateIn,
            response_model=PartyOut,
            status=201,
            summary="Create a party led by the selected character",
            **common,
        )(self.rest_create)
        route(
            "POST",
            "/api/party/invite",
            request_model=PartyInviteIn,
            response_model=PartyOut,
            summary="Invite a character (by id or name) to my party",
            **common,
        )(self.rest_invite)
        route(
            "POST",
            "/api/party/accept",
            request_model=PartyIdIn,
            response_model=PartyOut,
            summary="Accept an invite",
            **common,
        )(self.rest_accept)
        route(
            "POST",
            "/api/party/decline",
            request_model=PartyIdIn,
            response_model=OkOut,
            summary="Decline an invite",
            **common,
        )(self.rest_decline)
        route(
            "POST",
            "/api/party/leave",
            response_model=OkOut,
            summary="Leave my party",
            **common,
        )(self.rest_leave)
        route(
            "POST",
            "/api/party/kick",
            request_model=PartyKickIn,
            response_model=PartyOut,
            summary="Remove a member (leader only)",
            **common,
        )(self.rest_kick)
        route(
            "POST",
            "/api/party/disband",
            response_model=OkOut,
            summary="Disband my party (leader only)",
            **common,
        )(self.rest_disband)

    async def rest_get(self, req: ApiRequest) -> PartyOut:
        me = await self._rest_character(req)
        party_id = req.request.match_info.get("party_id", "")
        party = self._book().get(party_id)
        if party is None or not (
            party.is_member(me.id)
            or party.live_invite(me.id, self._now(), account_id=me.account_id) is not None
        ):
            raise LobbyError(
                "no such party", code=ErrorCode.NOT_FOUND, details={"party_id": party_id[:64]}
            )
        return self.party_out(party)

    async def rest_mine(self, req: ApiRequest) -> PartyOut:
        me = await self._rest_character(req)
        party = self._book().party_of(me.id)
        if party is None:
            raise LobbyError("you are not in a party", code=ErrorCode.NOT_FOUND)
        return self.party_out(party)

    async def rest_create(self, req: ApiRequest) -> PartyOut:
        me = await self._rest_character(req)
        change = await self.create(me.id, me.name, req.body_as(PartyCreateIn).name)
        return self._out_of(change)

    async def rest_invite(self, req: ApiRequest) -> PartyOut:
        me = await self._rest_character(req)
        body = req.body_as(PartyInviteIn)
        change, _ = await self.invite(me.id, body.target_id, body.target_name)
        return self._out_of(change)

    async def rest_accept(self, req: ApiRequest) -> PartyOut:
        me = await self._rest_character(req)
        change = await self.accept(me.id, me.name, me.account_id, req.body_as(PartyIdIn).party_id)
        return self._out_of(change)

    async def rest_decline(self, req: ApiRequest) -> OkOut:
        me = await self._rest_character(req)
        await self.decline(me.id, req.body_as(PartyIdIn).party_id)
        return OkOut()

    async def rest_leave(self, req: ApiRequest) -> OkOut:
        me = await self._rest_character(req)
        await self.leave(me.id)
        return OkOut()

    async def rest_kick(self, req: ApiRequest) -> PartyOut:
        me = await self._rest_character(req)
        change = await self.kick(me.id, req.body_as(PartyKickIn).target_id)
        return self._out_of(change)

    async def rest_disband(self, req: ApiRequest) -> OkOut:
        me = await self._rest_character(req)
        await self.disband(me.id)
        return OkOut()

    # -- hooks ----------------------------------------------------------------------------

    async def _on_join(self, presence: Presence) -> None:
        ctx = self._context()
        me = presence.character
        if me is None:
            return
        book = self._book()
        party = book.party_of(me.id)
        if party is not None:
            self._push_update(party, party.member_ids())
        for invite in book.invites_for(me.id, ctx.clock(), account_id=presence.account_id):
            ctx.hub.send_to_session(
                presence.session_id, self._invite_message(invite.party_id, me.id)
            )

    async def _on_presence_leave(self, presence: Presence) -> None:
        me = presence.character
        if me is None or self._slot.current is None:
            return
        party = self._book().party_of(me.id)
        if party is None:
            return
        if party.leader_id == me.id:
            hub = self._context().hub
            async with self._state.change():
                party = self._book().party_of(me.id)
                if party is None:
                    return
                online = [
                    m
                    for m in party.members
                    if m.character_id != me.id and _online(hub, m.character_id)
                ]
                if online:
                    heir = min(online, key=lambda m: (m.joined_at, m.order))
                    change = party.promote(me.id, heir.character_id, now=self._now())
                    await self._persist(change)
                    log.info(
                        "party %s: leader %d left, %d leads",
                        party.party_id,
                        me.id,
                        heir.character_id,
                    )
        self._push_update(party, party.member_ids())

    async def _on_character_deleted(self, db: AsyncConnection, character: Character) -> None:
        """Inside the deletion's transaction: its invites die with it, and it leaves its party."""
        book = self._book()
        for invited in book.drop_invites(character.id):
            await _write_party(db, invited, self._now())
            self._push_update(invited, invited.member_ids())
        if book.party_of(character.id) is None:
            return
        change = book.leave(character.id, now=self._now())
        party = book.get(change.party_id)
        if party is None or party.disbanded:
            await db.execute(delete(parties).where(parties.c.party_id == change.party_id))
        else:
            await _write_party(db, party, self._now())
        self._announce(change)

    # -- helpers --------------------------------------------------------------------------

    def _announce(self, change: PartyChange) -> None:
        ctx = self._context()
        hub = ctx.hub
        party = self._book().get(change.party_id)
        if change.kind == "disbanded" or party is None:
            msg = PartyDisbandMessage(party_id=change.party_id, reason=change.kind)
            for cid in change.notify:
                hub.send_to_character(cid, msg.model_copy())
            return
        self._push_update(party, change.notify)
        if change.kind == "invited" and change.subject_id is not None:
            hub.send_to_character(
                change.subject_id, self._invite_message(party.party_id, change.subject_id)
            )
        elif change.kind == "kicked" and change.subject_id is not None:
            hub.send_to_character(
                change.subject_id,
                PartyKickMessage(party_id=party.party_id, target_id=change.subject_id),
            )
        if change.kind == "joined":
            directory = ctx.services.directory
            if directory is not None:
                directory.introduce_members(party.member_ids(), focus=change.subject_id)

    def _push_update(self, party: Party, recipients: Any) -> None:
        hub = self._context().hub
        online: dict[int, bool] = {}
        locations: dict[int, int] = {}
        levels: dict[int, int] = {}
        for cid in party.member_ids():
            p = hub.presence_of_character(cid)
            online[cid] = _online(hub, cid)
            if p is not None and p.character is not None:
                locations[cid] = p.character.location_id
                levels[cid] = p.character.level
        msg = party_update_message(party, levels=levels, locations=locations, online=online)
        for cid in recipients:
            hub.send_to_character(cid, msg.model_copy())

    def _invite_message(self, party_id: str, invitee_id: int) -> PartyInviteMessage:
        party = self._book().get(party_id)
        invite = party.invites.get(invitee_id) if party is not None else None
        inviter_id = invite.invited_by if invite is not None else None
        inviter_name = None
        if party is not None and inviter_id is not None:
            inviter_name = next(
                (m.name for m in party.members if m.character_id == inviter_id), None
            )
        return PartyInviteMessage(
            party_id=party_id,
            inviter_id=inviter_id,
            inviter_name=inviter_name,
            target_id=invitee_id,
        )

    def _out_of(self, change: PartyChange) -> PartyOut:
        party = self._book().get(change.party_id)
        if party is None:
            raise LobbyError("the party is gone", code=ErrorCode.NOT_FOUND)
        return self.party_out(party)

    async def _persist(self, change: PartyChange) -> None:
        """Write the changed party (delete it when disbanded); reload on failure."""
        ctx = self._context()
        party = self._book().get(change.party_id)
        try:
            async with self._state.write() as db:
                if party is None or party.disbanded:
                    await db.execute(delete(parties).where(parties.c.party_id == change.party_id))
                else:
                    await _write_party(db, party, ctx.clock())
        except BaseException:
            await self._load(ctx)
            raise

    async def _write(self, party: Party) -> None:
        ctx = self._context()
        async with self._state.write() as db:
            await _write_party(db, party, ctx.clock())

    async def _load(self, ctx: LobbyContext) -> None:
        book = PartyBook(ctx.world.rules)
        async with ctx.db.read() as db:
            rows = (await db.execute(select(parties))).all()
        for row in rows:
            try:
                party = Party.from_dict(json.loads(row.data))
                if not party.disbanded and party.members:
                    book.add(party)
            except (ValueError, KeyError, TypeError, LobbyError):
                log.exception("party %s could not be loaded; skipped", row.party_id)
        self.book = book

    async def _find_character(self, target_id: int | None, target_name: str | None) -> Character:
        found = await character_named(self._context(), target_id, target_name)
        if found is None:
            raise LobbyError(
                "no such character",
                code=ErrorCode.NOT_FOUND,
                details={"target": str(target_id or target_name)[:64]},
            )
        return found

    async def _rest_character(self, req: ApiRequest) -> Character:
        session = req.require_session()
        if session.character_id is None:
            raise LobbyError("select a character first", code=ErrorCode.NO_CHARACTER)
        return await req.ctx.characters.get_owned(session.account_id, session.character_id)

    def _now(self) -> float:
        return self._context().clock()

    async def _reload(self) -> None:
        """Re-read the book (another lobby process may have changed it)."""
        ctx = self._slot.current
        if ctx is not None:
            await self._load(ctx)

    def _book(self) -> PartyBook:
        if self.book is None:
            raise LobbyError("parties are not loaded", code=ErrorCode.UNAVAILABLE)
        return self.book

    def _context(self) -> LobbyContext:
        return self._slot.ctx


def _online(hub: Hub, character_id: int) -> bool:
    """Is ``character_id`` connected, to this lobby process or to another one?"""
    p = hub.presence_of_character(character_id)
    return bool(p is not None and p.online) or hub.online_elsewhere(character_id)


async def _write_party(db: AsyncConnection, party: Party, now: float) -> None:
    await db.execute(delete(parties).where(parties.c.party_id == party.party_id))
    await db.execute(
        insert(parties).values(
            party_id=party.party_id, data=json.dumps(party.to_dict()), updated_at=now
        )
    )
