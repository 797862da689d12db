"""Helpers shared by the game services: identity from the session, ACKs, registration.

Every client request a game service handles is answered with either an ``ACK``
(``ref_id`` = the request's ``message_id``, ``details`` one of :mod:`protocol.acks`) or an
``ERROR`` with the same ``ref_id`` (raised as a :class:`~protocol.errors.ShardsError`
and turned into ``ERROR`` by the WebSocket endpoint). Identity always comes from
the session's selected character, never from a field of the message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import select

from lobby.characters import Character
from lobby.connection import Connection
from lobby.context import LobbyContext
from lobby.hub import Hub, MessageHandler
from lobby.presence import CharacterInfo
from lobby.storage import characters
from protocol.acks import AckDetails
from protocol.errors import ErrorCode, LobbyError
from protocol.messages import AckMessage, CharacterUpdateMessage, MessageType

__all__ = [
    "ack",
    "acting_character",
    "character_named",
    "push_character_updates",
    "online_anywhere",
    "present_anywhere",
    "register_handler",
    "stored_character",
]

log = logging.getLogger("lobby.services")


def acting_character(
    conn: Connection,
    *,
    claimed: int | None = None,
    field: str = "character_id",
    refusal: str = "you can only act as your own character",
) -> CharacterInfo:
    """The session's selected character (``ERROR no_character`` without one).

    ``claimed`` is the id a message names for its actor: naming anyone else is
    ``ERROR forbidden`` (``refusal``, ``details`` with ``field``).
    """
    character = conn.character
    if character is None:
        raise LobbyError("select a character first", code=ErrorCode.NO_CHARACTER)
    if claimed is not None and claimed != character.id:
        raise LobbyError(refusal, code=ErrorCode.FORBIDDEN, details={field: claimed})
    return character


async def stored_character(ctx: LobbyContext, character_id: int) -> Character:
    """The acting character's stored row (``ERROR not_found`` if it was deleted meanwhile)."""
    row = await ctx.characters.get(character_id)
    if row is None:
        raise LobbyError("your character no longer exists", code=ErrorCode.NOT_FOUND)
    return row


async def character_named(
    ctx: LobbyContext, target_id: int | None, target_name: str | None
) -> Character | None:
    """The character a request names by id or else by name (any case), or None if there is
    none (``ERROR validation_error`` when it names neither)."""
    if target_id is not None:
        return await ctx.characters.get(target_id)
    if not target_name:
        raise LobbyError("name a target_id or target_name", code=ErrorCode.VALIDATION_ERROR)
    async with ctx.db.read() as db:
        row = (
            await db.execute(
                select(characters.c.id).where(
                    characters.c.name_key == target_name.strip().casefold()
                )
            )
        ).first()
    return await ctx.characters.get(int(row[0])) if row is not None else None


def ack(conn: Connection, message_id: str, details: AckDetails) -> None:
    """Answer a request with ``ACK``: ``details`` is the request's model in :mod:`protocol.acks`."""
    conn.send(AckMessage(ref_id=message_id, details=details.details()))


def online_anywhere(hub: Hub, character_id: int) -> bool:
    """Is ``character_id`` connected, to this lobby process or to another one?"""
    p = hub.presence_of_character(character_id)
    return bool(p is not None and p.online) or hub.online_elsewhere(character_id)


def present_anywhere(hub: Hub, character_id: int) -> bool:
    """Does some lobby process hold ``character_id``'s presence (connected or inside its
    reconnect grace)? False means the player is gone, for now."""
    return hub.presence_of_character(character_id) is not None or hub.online_elsewhere(character_id)


def register_handler(ctx: LobbyContext, msg_type: MessageType, handler: MessageHandler) -> bool:
    """Register ``handler`` unless a service passed in explicitly already handles the type."""
    if ctx.hub.handler_for(msg_type) is not None:
        log.info("%s is handled by another service; the game handler stays off", msg_type.value)
        return False
    ctx.hub.register(msg_type, handler)
    return True


async def push_character_updates(ctx: LobbyContext, character_ids: Iterable[int]) -> int:
    """Send each online character of ``character_ids`` its stored state (``CHARACTER_UPDATE``),
    wherever it plays (through the broker to another lobby process)."""
    sent = 0
    for cid in dict.fromkeys(character_ids):
        if not online_anywhere(ctx.hub, cid):
            continue
        row = await ctx.characters.get(cid)
        if row is None:
            continue
        sent += ctx.hub.send_to_character(
            cid,
            CharacterUpdateMessage(
                character_id=row.id,
                character_name=row.name,
                location_id=row.location_id,
                health=row.health,
                max_health=max(1, row.max_health),
                level=row.level,
                faction=row.faction,
                experience=row.experience,
                gold=row.gold,
            ),
        )
    return sent
