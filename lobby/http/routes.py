"""The seed's core REST endpoints: auth, characters, status, and the OpenAPI document.

=========================================  ====  =====================================
``POST /api/auth/register``                201   ``RegisterRequest`` -> ``RegisterResponse``
``POST /api/auth/login``                   200   ``LoginRequest`` -> ``LoginResponse``
``POST /api/auth/logout``                  200   revokes the session, closes its WS
``GET /api/characters``                    200   ``CharacterListResponse``
``POST /api/characters``                   201   ``CharacterCreateRequest`` -> ``CharacterOut``
``POST /api/characters/select``            200   ``CharacterSelectRequest`` -> ``...Response``
``DELETE /api/characters/{character_id}``  200   ``CharacterDeleteResponse``
``GET /api/world/map``                     200   ``WorldMapOut``: locations and their exits
``GET /api/status``                        200   ``StatusResponse`` (no auth)
``GET /api/openapi.json``                  200   OpenAPI 3.1 (no auth)
=========================================  ====  =====================================

Selecting a character another session of the account has selected moves it: the
other session loses its selection and gets ``ERROR conflict`` on its WebSocket.
Select with ``peer_public_key`` and ``box_key`` (and optional ``endpoints`` /
``candidates``, the node's addresses, which the directory hands only to paired
peers) returns a peer ticket signed with the lobby key
(:func:`protocol.crypto.issue_ticket`), valid for ``ticket_ttl`` seconds; the
ticket names no address.

Response bodies are the shared models of :mod:`protocol.rest` (clients parse
the same classes).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace

from aiohttp import web

from lobby.characters import Character
from lobby.http.api import Api, ApiRequest
from lobby.http.models import (
    CharacterCreateRequest,
    CharacterSelectRequest,
    LoginRequest,
    RegisterRequest,
)
from lobby.http.openapi import build_openapi
from lobby.http.ws import ws_encodings
from lobby.presence import CharacterInfo
from lobby.services.rendezvous import registered_candidates
from lobby.version import SERVER_VERSION
from protocol.crypto import b64url_decode, issue_ticket, peer_id
from protocol.errors import ErrorCode, LobbyError
from protocol.factories import create_error_message
from protocol.rest import (
    CharacterDeleteResponse,
    CharacterListResponse,
    CharacterOut,
    CharacterSelectResponse,
    LocationOut,
    LoginResponse,
    LogoutResponse,
    RegisterResponse,
    StatusResponse,
    WorldMapOut,
)
from protocol.version import PROTOCOL_VERSION

__all__ = ["SERVER_VERSION", "add_core_routes"]

log = logging.getLogger("lobby.http")


def add_core_routes(api: Api) -> None:
    """Register the core endpoints on ``api``."""
    api.route(
        "POST",
        "/api/auth/register",
        request_model=RegisterRequest,
        response_model=RegisterResponse,
        status=201,
        auth=False,
        summary="Register an account",
        tags=("auth",),
        errors=(409,),
    )(register)
    api.route(
        "POST",
        "/api/auth/login",
        request_model=LoginRequest,
        response_model=LoginResponse,
        auth=False,
        summary="Log in: returns a bearer token",
        tags=("auth",),
        errors=(401,),
    )(login)
    api.route(
        "POST",
        "/api/auth/logout",
        response_model=LogoutResponse,
        summary="Log out: the token stops working, the session's WebSocket closes",
        tags=("auth",),
    )(logout)
    api.route(
        "GET",
        "/api/characters",
        response_model=CharacterListResponse,
        summary="The account's characters",
        tags=("characters",),
    )(list_characters)
    api.route(
        "POST",
        "/api/characters",
        request_model=CharacterCreateRequest,
        response_model=CharacterOut,
        status=201,
        summary="Create a character",
        tags=("characters",),
        errors=(409,),
    )(create_character)
    api.route(
        "POST",
        "/api/characters/select",
        request_model=CharacterSelectRequest,
        response_model=CharacterSelectResponse,
        summary="Select a character (and get a peer ticket)",
        tags=("characters",),
        errors=(403, 404),
    )(select_character)
    api.route(
        "DELETE",
        "/api/characters/{character_id}",
        response_model=CharacterDeleteResponse,
        summary="Delete a character",
        tags=("characters",),
        path_params={"character_id": "integer"},
        errors=(404,),
    )(delete_character)
    api.route(
        "GET",
        "/api/world/map",
        response_model=WorldMapOut,
        summary="The world map: every location, its exits (MOVE targets), shards, players",
        tags=("world",),
    )(world_map)
    api.route(
        "GET",
        "/api/status",
        response_model=StatusResponse,
        auth=False,
        summary="Server status and the lobby's ticket key",
        tags=("system",),
    )(status)
    api.route(
        "GET",
        "/api/openapi.json",
        auth=False,
        summary="This OpenAPI 3.1 document",
        tags=("system",),
    )(openapi)


async def register(req: ApiRequest) -> RegisterResponse:
    body = req.body_as(RegisterRequest)
    account = await req.ctx.accounts.register(body.username, body.password, req.address)
    return RegisterResponse(account_id=account.id, username=account.username)


async def login(req: ApiRequest) -> LoginResponse:
    body = req.body_as(LoginRequest)
    account = await req.ctx.accounts.authenticate(body.username, body.password, req.address)
    token, session = await req.ctx.sessions.create(account)
    return LoginResponse(
        token=token,
        account_id=account.id,
        username=account.username,
        is_admin=account.is_admin,
        expires_at=session.expires_at,
        session_ttl=req.ctx.settings.session_ttl,
    )


async def logout(req: ApiRequest) -> LogoutResponse:
    session = req.require_session()
    await req.ctx.sessions.revoke(session.id)
    await req.ctx.hub.end_session(session.id, reason="logged out")
    log.info("logout %s", session.describe())
    return LogoutResponse()


async def list_characters(req: ApiRequest) -> CharacterListResponse:
    session = req.require_session()
    rows = await req.ctx.characters.list(session.account_id)
    return CharacterListResponse(
        characters=[_out(c) for c in rows],
        limit=req.ctx.world.rules.character_limit_per_account,
    )


async def create_character(req: ApiRequest) -> CharacterOut:
    session = req.require_session()
    body = req.body_as(CharacterCreateRequest)
    character = await req.ctx.characters.create(
        session.account_id, body.name, body.faction, body.character_class
    )
    return _out(character)


async def select_character(req: ApiRequest) -> CharacterSelectResponse:
    ctx = req.ctx
    session = req.require_session()
    body = req.body_as(CharacterSelectRequest)
    character = await ctx.characters.get_owned(session.account_id, body.character_id)
    ticket: str | None = None
    ticket_expires: float | None = None
    holder: str | None = None
    peer_info = None
    candidates = registered_candidates(
        body.endpoints, body.candidates, allow_loopback=ctx.settings.loopback_candidates
    )
    if body.peer_public_key is not None or body.box_key is not None:
        if body.peer_public_key is None or body.box_key is None:
            raise LobbyError(
                "a peer ticket needs both peer_public_key and box_key",
                code=ErrorCode.VALIDATION_ERROR,
            )
        public_raw = _key(body.peer_public_key, "peer_public_key")
        box_raw = _key(body.box_key, "box_key")
        now = ctx.clock()
        try:
            ticket = issue_ticket(
                ctx.key.private_key,
                character_id=character.id,
                character_name=character.name,
                faction=character.faction,
                public_key=public_raw,
                box_key=box_raw,
                endpoints=[],  # addresses go only to paired peers, never in the ticket
                now=now,
                ttl=ctx.settings.ticket_ttl,
            )
        except ValueError as exc:
            raise LobbyError(
                f"cannot issue a ticket for these values: {exc}", code=ErrorCode.VALIDATION_ERROR
            ) from None
        ticket_expires = now + ctx.settings.ticket_ttl
        holder = peer_id(public_raw)
        peer_info = {
            "peer_id": holder,
            "public_key": body.peer_public_key,
            "box_key": body.box_key,
            "endpoints": [c.endpoint for c in candidates],
            "candidates": [c.model_dump(mode="json") for c in candidates],
            "ticket": ticket,
        }
    await ctx.sessions.select_character(session, character.id, peer_info)
    for other in ctx.hub.presences():
        if other.session_id != session.id and other.character_id == character.id:
            await ctx.hub.set_character(other.session_id, None)
            ctx.hub.send_to_session(
                other.session_id,
                create_error_message(
                    ErrorCode.CONFLICT,
                    "your character was selected by another session",
                    {"character_id": character.id},
                ),
            )
    current = ctx.hub.presence(session.id)
    again = current is not None and current.character_id == character.id
    if again and current is not None and current.character is not None:
        # The hub follows each MOVE the moment it commits; the row read above may predate
        # one that committed meanwhile (a re-select racing a move). Its stale location
        # would put the player back where it was: paired there, unpaired where it stands.
        character = replace(character, location_id=current.character.location_id)
    await ctx.hub.set_character(session.id, _info(character))
    directory = ctx.services.directory
    if again and directory is not None:  # same character: renewed ticket, maybe new keys
        await directory.reselected(session.id)
    return CharacterSelectResponse(
        character=_out(character),
        ticket=ticket,
        ticket_expires_at=ticket_expires,
        peer_id=holder,
        lobby_public_key=ctx.key.public_key_b64,
        lobby_accepted_keys=ctx.key.accepted_b64,
    )


async def delete_character(req: ApiRequest) -> CharacterDeleteResponse:
    session = req.require_session()
    character_id = req.path_int("character_id")
    await req.ctx.characters.delete(session.account_id, character_id)
    req.ctx.sessions.character_deleted(character_id)
    await req.ctx.hub.character_deleted(character_id)
    return CharacterDeleteResponse(character_id=character_id)


async def world_map(req: ApiRequest) -> WorldMapOut:
    world = req.ctx.world
    players: Counter[int] = Counter(
        p.character.location_id for p in req.ctx.hub.presences() if p.character is not None
    )
    players.update(req.ctx.hub.broker.players_elsewhere_at())  # the other lobby processes'
    shards: dict[int, list[int]] = {}
    for shard in world.shards:
        shards.setdefault(shard.location_id, []).append(shard.id)
    return WorldMapOut(
        name=world.name,
        start_location_id=world.start_location_id,
        locations=[
            LocationOut(
                id=loc.id,
                name=loc.name,
                description=loc.description,
                neighbours=sorted(loc.neighbours),
                safe=loc.safe,
                shard_ids=shards.get(loc.id, []),
                players=players[loc.id],
            )
            for loc in sorted(world.locations, key=lambda loc: loc.id)
        ],
    )


async def status(req: ApiRequest) -> StatusResponse:
    ctx = req.ctx
    now = ctx.clock()
    return StatusResponse(
        name=ctx.world.name,
        protocol_version=PROTOCOL_VERSION,
        server_version=SERVER_VERSION,
        time=now,
        uptime=max(0.0, now - ctx.started_at),
        players_online=ctx.hub.players_in_cluster,
        connections=len(ctx.hub.connections()),
        database=ctx.db.dialect,
        lobby_public_key=ctx.key.public_key_b64,
        lobby_accepted_keys=ctx.key.accepted_b64,
        lobby_peer_id=ctx.key.peer_id,
        relayed_messages=ctx.services.directory.relayed_messages if ctx.services.directory else 0,
        ws_encodings=ws_encodings(ctx.settings),
    )


async def openapi(req: ApiRequest) -> web.Response:
    doc = build_openapi(
        req.ctx.api.endpoints,
        title="Shards of Eternity lobby",
        version=SERVER_VERSION,
        description="REST and WebSocket API of the master lobby.",
        choices={
            "CharacterCreateRequest": {
                "faction": req.ctx.world.faction_names(),
                "character_class": req.ctx.world.class_names(),
            }
        },
    )
    return web.json_response(doc)


def _out(c: Character) -> CharacterOut:
    data = c.to_dict()
    data.pop("account_id")
    return CharacterOut.model_validate(data)


def _info(c: Character) -> CharacterInfo:
    return CharacterInfo(c.id, c.name, c.faction, c.location_id, c.level)


def _key(value: str, name: str) -> bytes:
    try:
        raw = b64url_decode(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise LobbyError(
            f"{name} must be 32 bytes as unpadded base64url",
            code=ErrorCode.VALIDATION_ERROR,
            details={"field": name},
        )
    return raw
