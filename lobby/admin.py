"""The admin API: who is online, inspect, kick, ban, revoke, announce, the world's state.

Every endpoint is under ``/api/admin/`` and needs the bearer token of an account
listed in ``admin_accounts`` (``SHARDS_ADMIN_ACCOUNTS``): no token is 401, any
other account 403 ``forbidden`` (JSON body, like every error). The ``/admin``
page (static files in ``lobby/http/static/admin``) is built on these calls only.

=====================================================  ==========================================
``GET /api/admin/players``                             players online by location, the map graph
``GET /api/admin/characters/{character_id}``           one character, its account, its sessions
``POST /api/admin/characters/{character_id}/kick``     revoke the sessions playing it, close them
``GET /api/admin/bans``                                the banned accounts
``POST /api/admin/accounts/{account_id}/ban``          ban: refuse logins, revoke every session
``DELETE /api/admin/accounts/{account_id}/ban``        unban
``POST /api/admin/accounts/{account_id}/revoke``       revoke every session of the account
``POST /api/admin/announcements``                      a WORLD_ANNOUNCEMENT to everyone online
``GET /api/admin/world``                               shard owners, reality, Aetherfall timer
=====================================================  ==========================================

A kicked or revoked session's token stops working at once on this lobby (and
within the session cache's recheck interval on another lobby process sharing
the database); its WebSocket is closed with 1008 and the reason. A banned
account's login is refused with 403 ``forbidden`` (``details.reason`` =
``banned``) only after its password checked out, so a ban reveals nothing to
someone guessing passwords. Bans live in the ``account_bans`` table
(:data:`lobby.storage.schema.account_bans`, Alembic revision 0002).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, insert, select

from lobby.accounts import Account
from lobby.context import LobbyContext
from lobby.http.api import ApiRequest
from lobby.presence import Presence
from lobby.services.world import WorldService
from lobby.sessions import Session
from lobby.storage import accounts, sessions
from lobby.storage.schema import account_bans
from protocol.errors import ErrorCode, LobbyError
from protocol.messages import WorldAnnouncementMessage
from protocol.rest import WorldStateOut

__all__ = [
    "AdminService",
]

log = logging.getLogger("lobby.admin")

KICK_REASON = "kicked by an admin"
BAN_REASON = "account banned"
REVOKE_REASON = "sessions revoked by an admin"

# -- bodies ---------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class BanRequest(_In):
    reason: str = Field(min_length=1, max_length=200, description="shown to operators only")


class AnnouncementRequest(_In):
    content: str = Field(min_length=1, max_length=2000)
    priority: Literal["info", "warning", "critical"] = "info"


class OnlinePlayerOut(BaseModel):
    session_id: int
    account_id: int
    username: str
    character_id: int
    character_name: str
    faction: str
    level: int
    location_id: int
    connected: bool = Field(description="False: inside the reconnect grace")


class LocationOut(BaseModel):
    id: int
    name: str
    safe: bool
    neighbours: list[int]
    players: list[OnlinePlayerOut]
    shard_owners: dict[str, str | None] = Field(
        description="shard name -> owning faction (None: unclaimed) of the shards here"
    )


class PlayersOut(BaseModel):
    players_online: int
    connections: int
    sessions_without_character: int
    factions: list[str]
    locations: list[LocationOut]


class SessionOut(BaseModel):
    session_id: int
    created_at: float
    expires_at: float
    character_id: int | None
    connected: bool


class CharacterInspectOut(BaseModel):
    character: dict[str, Any] = Field(description="every column of the character row")
    account_id: int
    username: str
    banned: bool
    online: bool
    location_name: str | None
    sessions: list[SessionOut] = Field(description="the account's live sessions")


class KickOut(BaseModel):
    character_id: int
    revoked_sessions: list[int]


class BanOut(BaseModel):
    account_id: int
    banned: bool
    reason: str | None = None
    banned_at: float | None = None
    banned_by: str | None = None
    revoked_sessions: list[int] = Field(default_factory=list)


class BansOut(BaseModel):
    bans: list[BanOut]


class RevokeOut(BaseModel):
    account_id: int
    revoked_sessions: list[int]


class AnnouncementOut(BaseModel):
    recipients: int


class AdminWorldOut(BaseModel):
    now: float
    world: WorldStateOut | None = Field(description="None when the world service is not running")


# -- the service ----------------------------------------------------------------------------


class AdminService:
    """Registers the admin endpoints and refuses logins of banned accounts."""

    name = "admin"

    def __init__(self) -> None:
        self._ctx: LobbyContext | None = None

    async def setup(self, ctx: LobbyContext) -> None:
        self._ctx = ctx
        ctx.accounts.login_checks.append(self._refuse_banned)
        api = ctx.api
        common: dict[str, Any] = {"tags": ("admin",), "errors": (403,), "admin": True}
        character_id = {"character_id": "integer"}
        account_id = {"account_id": "integer"}
        api.route(
            "GET",
            "/api/admin/players",
            response_model=PlayersOut,
            summary="Players online by location, with the map's graph and shard owners",
            **common,
        )(self.players)
        api.route(
            "GET",
            "/api/admin/characters/{character_id}",
            response_model=CharacterInspectOut,
            summary="Inspect a character, its account and sessions",
            path_params=character_id,
            tags=("admin",),
            errors=(403, 404),
            admin=True,
        )(self.inspect)
        api.route(
            "POST",
            "/api/admin/characters/{character_id}/kick",
            response_model=KickOut,
            summary="Kick: revoke the sessions playing this character and close their sockets",
            path_params=character_id,
            tags=("admin",),
            errors=(403, 404),
            admin=True,
        )(self.kick)
        api.route(
            "GET", "/api/admin/bans", response_model=BansOut, summary="Banned accounts", **common
        )(self.bans)
        api.route(
            "POST",
            "/api/admin/accounts/{account_id}/ban",
            request_model=BanRequest,
            response_model=BanOut,
            summary="Ban an account: logins refused, every session revoked",
            path_params=account_id,
            tags=("admin",),
            errors=(403, 404),
            admin=True,
        )(self.ban)
        api.route(
            "DELETE",
            "/api/admin/accounts/{account_id}/ban",
            response_model=BanOut,
            summary="Unban an account",
            path_params=account_id,
            tags=("admin",),
            errors=(403, 404),
            admin=True,
        )(self.unban)
        api.route(
            "POST",
            "/api/admin/accounts/{account_id}/revoke",
            response_model=RevokeOut,
            summary="Revoke every session of an account (their sockets close)",
            path_params=account_id,
            tags=("admin",),
            errors=(403, 404),
            admin=True,
        )(self.revoke)
        api.route(
            "POST",
            "/api/admin/announcements",
            request_model=AnnouncementRequest,
            response_model=AnnouncementOut,
            status=201,
            summary="Send a world announcement to everyone online",
            **common,
        )(self.announce)
        api.route(
            "GET",
            "/api/admin/world",
            response_model=AdminWorldOut,
            summary="Shard owners, the reality and the Aetherfall timer",
            **common,
        )(self.world)

    async def close(self) -> None:
        if self._ctx is not None:
            checks = self._ctx.accounts.login_checks
            if self._refuse_banned in checks:
                checks.remove(self._refuse_banned)
        self._ctx = None

    # -- endpoints ------------------------------------------------------------------------

    async def players(self, req: ApiRequest) -> PlayersOut:
        ctx = _admin(req)
        by_location: dict[int, list[OnlinePlayerOut]] = {}
        without = 0
        for p in ctx.hub.presences():
            if p.character is None:
                without += 1
                continue
            by_location.setdefault(p.character.location_id, []).append(_player(p))
        owners = _shard_owners(ctx)
        locations = [
            LocationOut(
                id=loc.id,
                name=loc.name,
                safe=loc.safe,
                neighbours=list(loc.neighbours),
                players=sorted(by_location.get(loc.id, []), key=lambda p: p.character_name),
                shard_owners={
                    s.name: owners.get(s.id) for s in ctx.world.shards if s.location_id == loc.id
                },
            )
            for loc in ctx.world.locations
        ]
        return PlayersOut(
            players_online=ctx.hub.players_online,
            connections=len(ctx.hub.connections()),
            sessions_without_character=without,
            factions=[f.name for f in ctx.world.factions],
            locations=locations,
        )

    async def inspect(self, req: ApiRequest) -> CharacterInspectOut:
        ctx = _admin(req)
        character = await ctx.characters.get(req.path_int("character_id"))
        if character is None:
            raise LobbyError("no such character", code=ErrorCode.NOT_FOUND)
        async with ctx.db.read() as conn:
            username = (
                await conn.execute(
                    select(accounts.c.username).where(accounts.c.id == character.account_id)
                )
            ).scalar_one()
            banned = await _ban_row(conn, character.account_id) is not None
            rows = (
                await conn.execute(
                    select(
                        sessions.c.id,
                        sessions.c.created_at,
                        sessions.c.expires_at,
                        sessions.c.character_id,
                    )
                    .where(sessions.c.account_id == character.account_id)
                    .where(sessions.c.expires_at > ctx.clock())
                    .order_by(sessions.c.id)
                )
            ).all()
        presence = ctx.hub.presence_of_character(character.id)
        location = ctx.world.location(character.location_id)
        return CharacterInspectOut(
            character=character.to_dict(),
            account_id=character.account_id,
            username=str(username),
            banned=banned,
            online=presence is not None,
            location_name=location.name if location else None,
            sessions=[
                SessionOut(
                    session_id=int(r.id),
                    created_at=float(r.created_at),
                    expires_at=float(r.expires_at),
                    character_id=r.character_id,
                    connected=_connected(ctx, int(r.id)),
                )
                for r in rows
            ],
        )

    async def kick(self, req: ApiRequest) -> KickOut:
        ctx = _admin(req)
        character_id = req.path_int("character_id")
        if await ctx.characters.get(character_id) is None:
            raise LobbyError("no such character", code=ErrorCode.NOT_FOUND)
        ids = set(await ctx.sessions.sessions_selecting(character_id))
        ids |= {p.session_id for p in ctx.hub.presences() if p.character_id == character_id}
        revoked = await _end_sessions(ctx, sorted(ids), KICK_REASON)
        log.info("%s kicked character=%d (sessions %s)", _who(req), character_id, revoked)
        return KickOut(character_id=character_id, revoked_sessions=revoked)

    async def bans(self, req: ApiRequest) -> BansOut:
        ctx = _admin(req)
        async with ctx.db.read() as conn:
            rows = (
                await conn.execute(select(account_bans).order_by(account_bans.c.banned_at))
            ).all()
        return BansOut(bans=[_ban_out(r) for r in rows])

    async def ban(self, req: ApiRequest) -> BanOut:
        ctx = _admin(req)
        account_id = await _account(req)
        body = req.body_as(BanRequest)
        admin = req.require_session().username
        now = ctx.clock()
        async with ctx.db.write() as conn:
            await conn.execute(delete(account_bans).where(account_bans.c.account_id == account_id))
            await conn.execute(
                insert(account_bans).values(
                    account_id=account_id, reason=body.reason, banned_at=now, banned_by=admin
                )
            )
        revoked = await _end_sessions(ctx, await _account_sessions(ctx, account_id), BAN_REASON)
        log.warning("%s banned account=%d: %s", _who(req), account_id, body.reason)
        return BanOut(
            account_id=account_id,
            banned=True,
            reason=body.reason,
            banned_at=now,
            banned_by=admin,
            revoked_sessions=revoked,
        )

    async def unban(self, req: ApiRequest) -> BanOut:
        ctx = _admin(req)
        account_id = await _account(req)
        async with ctx.db.write() as conn:
            await conn.execute(delete(account_bans).where(account_bans.c.account_id == account_id))
        log.warning("%s unbanned account=%d", _who(req), account_id)
        return BanOut(account_id=account_id, banned=False)

    async def revoke(self, req: ApiRequest) -> RevokeOut:
        ctx = _admin(req)
        account_id = await _account(req)
        revoked = await _end_sessions(ctx, await _account_sessions(ctx, account_id), REVOKE_REASON)
        log.info("%s revoked the sessions of account=%d: %s", _who(req), account_id, revoked)
        return RevokeOut(account_id=account_id, revoked_sessions=revoked)

    async def announce(self, req: ApiRequest) -> AnnouncementOut:
        ctx = _admin(req)
        body = req.body_as(AnnouncementRequest)
        limit = ctx.settings.announcement_max_length
        if len(body.content) > limit:
            raise LobbyError(
                f"the announcement is longer than {limit} characters",
                code=ErrorCode.VALIDATION_ERROR,
            )
        recipients = ctx.hub.broadcast(
            WorldAnnouncementMessage(
                sender_name=req.require_session().username,
                content=body.content,
                priority=body.priority,
            )
        )
        log.info("%s announced to %d (%d chars)", _who(req), recipients, len(body.content))
        return AnnouncementOut(recipients=recipients)

    async def world(self, req: ApiRequest) -> AdminWorldOut:
        ctx = _admin(req)
        world = ctx.services.find(WorldService)
        now = ctx.clock()
        state = world.state_out(now) if world is not None and world.board is not None else None
        return AdminWorldOut(now=now, world=state)

    # -- login check ----------------------------------------------------------------------

    async def _refuse_banned(self, account: Account) -> None:
        if self._ctx is None:
            return
        async with self._ctx.db.read() as conn:
            row = await _ban_row(conn, account.id)
        if row is not None:
            raise LobbyError(
                "this account is banned",
                code=ErrorCode.FORBIDDEN,
                details={"reason": "banned"},
            )


# -- helpers --------------------------------------------------------------------------------


def _admin(req: ApiRequest) -> LobbyContext:
    """The context; the endpoint's ``admin=True`` let only an admin session get here."""
    if not req.require_session().is_admin:  # never reached: a registration mistake
        raise LobbyError("for admin accounts only", code=ErrorCode.FORBIDDEN)
    return req.ctx


def _who(req: ApiRequest) -> str:
    session: Session = req.require_session()
    return f"admin {session.username!r} ({session.describe()})"


def _player(p: Presence) -> OnlinePlayerOut:
    c = p.character
    assert c is not None  # noqa: S101 - callers pass presences with a character
    return OnlinePlayerOut(
        session_id=p.session_id,
        account_id=p.account_id,
        username=p.username,
        character_id=c.id,
        character_name=c.name,
        faction=c.faction,
        level=c.level,
        location_id=c.location_id,
        connected=p.online,
    )


def _connected(ctx: LobbyContext, session_id: int) -> bool:
    p = ctx.hub.presence(session_id)
    return p is not None and p.online


def _shard_owners(ctx: LobbyContext) -> dict[int, str | None]:
    world = ctx.services.find(WorldService)
    if world is None or world.board is None:
        return {}
    return {s.shard_id: s.owner for s in world.state_out(ctx.clock()).shards}


async def _account(req: ApiRequest) -> int:
    account_id = req.path_int("account_id")
    async with req.ctx.db.read() as conn:
        found = (
            await conn.execute(select(accounts.c.id).where(accounts.c.id == account_id))
        ).first()
    if found is None:
        raise LobbyError("no such account", code=ErrorCode.NOT_FOUND)
    return account_id


async def _account_sessions(ctx: LobbyContext, account_id: int) -> list[int]:
    async with ctx.db.read() as conn:
        rows = await conn.execute(select(sessions.c.id).where(sessions.c.account_id == account_id))
        ids = {int(i) for i in rows.scalars()}
    ids |= {p.session_id for p in ctx.hub.presences() if p.account_id == account_id}
    return sorted(ids)


async def _end_sessions(ctx: LobbyContext, session_ids: list[int], reason: str) -> list[int]:
    """Revoke each session (its token stops working) and close its socket with ``reason``."""
    for session_id in session_ids:
        await ctx.sessions.revoke(session_id)
        await ctx.hub.end_session(session_id, reason=reason)
    return session_ids


async def _ban_row(conn: Any, account_id: int) -> Any:
    return (
        await conn.execute(select(account_bans).where(account_bans.c.account_id == account_id))
    ).first()


def _ban_out(row: Any) -> BanOut:
    return BanOut(
        account_id=int(row.account_id),
        banned=True,
        reason=row.reason,
        banned_at=float(row.banned_at),
        banned_by=row.banned_by,
    )
