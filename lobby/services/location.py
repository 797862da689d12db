"""``MOVE``: discrete location changes, validated against the world map and persisted.

A client sends ``MOVE(to_location_id, from_location_id?)``; the mover is the
session's character (a ``character_id`` naming anyone else is refused with
``FORBIDDEN``). The move is checked by :func:`lobby.game.travel.validate_move`
(existing neighbour, not in combat, a stated ``from_location_id`` must match the
lobby's record: ``ERROR invalid_move``), written with a conditional ``UPDATE``
(a concurrent move of the same character loses), then announced:

* ``PLAYER_LEFT_AREA`` (with ``to_location_id``) to the players at the old location;
* ``PLAYER_JOINED_AREA`` to the players at the new location;
* ``LOCATION_UPDATE`` to the mover and the mover's party members;
* ``ACK`` (``details.location_id``) to the mover, then the directory's ``PEER_INFO``
  exchange with the players at the new location.
"""

from __future__ import annotations

import logging

from sqlalchemy import update

from lobby.broker import Audience
from lobby.connection import Connection
from lobby.context import ContextSlot, LobbyContext
from lobby.game.travel import validate_move
from lobby.services._common import ack, acting_character, register_handler, stored_character
from lobby.storage import characters
from protocol.acks import MoveAck
from protocol.errors import ErrorCode, LobbyError
from protocol.messages import (
    LocationUpdateMessage,
    MessageType,
    MoveMessage,
    PlayerJoinedAreaMessage,
    PlayerLeftAreaMessage,
)

__all__ = ["LocationService"]

log = logging.getLogger("lobby.location")


class LocationService:
    """The ``MOVE`` handler."""

    name = "location"

    def __init__(self) -> None:
        self._slot = ContextSlot("the location service")
        self.moves = 0

    async def setup(self, ctx: LobbyContext) -> None:
        self._slot.attach(ctx)
        register_handler(ctx, MessageType.MOVE, self.on_move)

    async def close(self) -> None:
        self._slot.detach()

    async def on_move(self, conn: Connection, msg: MoveMessage) -> None:
        ctx = self._slot.ctx
        me = acting_character(
            conn, claimed=msg.character_id, refusal="you can only move your own character"
        )
        row = await stored_character(ctx, me.id)
        combat = ctx.services.combat
        in_combat = combat is not None and await combat.in_combat(me.id)
        destination = validate_move(
            ctx.world,
            current_location_id=row.location_id,
            to_location_id=msg.to_location_id,
            claimed_from_id=msg.from_location_id,
            in_combat=in_combat,
        )
        origin = row.location_id
        async with ctx.db.write() as db:
            result = await db.execute(
                update(characters)
                .where(characters.c.id == me.id, characters.c.location_id == origin)
                .values(location_id=destination.id)
            )
        if result.rowcount != 1:
            raise LobbyError(
                "your location changed meanwhile; try again",
                code=ErrorCode.INVALID_MOVE,
                details={"to_location_id": destination.id},
            )
        self.moves += 1
        hub = ctx.hub
        hub.broadcast(
            PlayerLeftAreaMessage(
                character_id=me.id,
                character_name=me.name,
                location_id=origin,
                to_location_id=destination.id,
            ),
            where=Audience.location(origin, exclude_character=me.id),
        )
        hub.update_character(me.id, location_id=destination.id)
        hub.broadcast(
            PlayerJoinedAreaMessage(
                character_id=me.id,
                character_name=me.name,
                location_id=destination.id,
                level=me.level,
                faction=me.faction,
            ),
            where=Audience.location(destination.id, exclude_character=me.id),
        )
        update_msg = LocationUpdateMessage(
            character_id=me.id,
            character_name=me.name,
            location_id=destination.id,
            location_name=destination.name,
            previous_location_id=origin,
        )
        recipients = {me.id}
        parties = ctx.services.parties
        if parties is not None:
            recipients.update(parties.member_ids_of(me.id))
        for cid in recipients:
            hub.send_to_character(cid, update_msg.model_copy())
        ack(
            conn,
            msg.message_id,
            MoveAck(location_id=destination.id, previous_location_id=origin),
        )
        directory = ctx.services.directory
        if directory is not None and conn.presence is not None:
            directory.introduce(conn.presence)
        log.debug("character %d moved %d -> %d", me.id, origin, destination.id)
