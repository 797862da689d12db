"""The authoritative world: shard ownership, reality, the Aetherfall schedule, the event log.

State lives in :class:`~lobby.game.shards.ShardBoard` (rules) and is persisted in
``shard_owners``, ``world_meta`` and ``world_events``; it is loaded at start, so
a restart keeps owners, reality, the Aetherfall schedule and the log.

WebSocket:

* ``SHARD_CAPTURE(shard_id)``: the capturer is the session's character, standing
  where the lobby's record says (``ERROR not_at_location`` elsewhere,
  ``already_owned``, ``shard_cooldown``, ``not_found``). On success, in one
  transaction: owner row, reality, event log; then ``SHARD_CAPTURED`` and
  ``SHARD_STATUS`` to everyone, ``REALITY_SHIFT`` + ``WORLD_ANNOUNCEMENT`` when the
  capture crossed the threshold, and ``ACK`` (``details``: shard_id, faction,
  current_reality) to the capturer.
* On joining, a player gets ``WORLD_STATE``.
* Aetherfall: :meth:`WorldService.tick` (run every ``maintenance_interval`` by a
  task, or directly by tests after moving the injectable clock) fires one when
  ``aetherfall_interval_seconds`` have passed since the last (or since the
  world's first start): seed = the Aetherfall's number, so the event is
  reproducible. It frees the epicentre's shards, damages the characters standing
  in the struck area (down to 1 health, never killing) and is broadcast as
  ``AETHERFALL`` (active), ``SHARD_STATUS``, ``WORLD_ANNOUNCEMENT``; when it ends,
  ``AETHERFALL`` (inactive).

REST: ``GET /api/world/state``, ``GET /api/world/shards``,
``GET /api/world/events?limit=&before=`` (newest first, paged by id).

``GET /api/world/state`` answers from a cached JSON body, rebuilt when anything
in it may have changed: the world's version (bumped by every change to the
board, the reality, the Aetherfall and the recent events), the hub's
``presence_version`` (online count), and the clock passing the first moment the
document would read differently (a capture cooldown ending, the active Aetherfall
ending). The session check and the rate limits still run on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections import deque
from typing import Any, NamedTuple

from aiohttp import web
from sqlalchemy import case, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from lobby.cluster_state import SharedState
from lobby.connection import Connection
from lobby.context import ContextSlot, LobbyContext
from lobby.game.chronicle import (
    LogEntry,
    aetherfall_announcement,
    aetherfall_end_entry,
    aetherfall_entry,
    capture_entries,
    reality_shift_announcement,
)
from lobby.game.messages import (
    aetherfall_message,
    reality_shift_message,
    shard_captured_message,
    shard_status_message,
    world_state_message,
)
from lobby.game.shards import AetherfallEvent, ShardBoard, ShardState, aetherfall_event
from lobby.http.api import ApiRequest
from lobby.presence import Presence
from lobby.services._common import (
    ack,
    acting_character,
    push_character_updates,
    register_handler,
    stored_character,
)
from lobby.services.models import EventsQuery
from lobby.storage import characters
from lobby.storage.game_schema import shard_owners, world_events, world_meta
from protocol.acks import ShardCaptureAck
from protocol.errors import ErrorCode, LobbyError
from protocol.messages import (
    MessageType,
    ShardCaptureMessage,
    WorldEvent,
)
from protocol.rest import AetherfallOut, EventOut, EventsOut, ShardOut, ShardsOut, WorldStateOut

__all__ = ["WorldService", "append_event"]

log = logging.getLogger("lobby.world")

_RECENT = 10


async def append_event(db: AsyncConnection, entry: LogEntry, now: float) -> int:
    """Append ``entry`` to the world log inside the caller's transaction; return its id."""
    result = await db.execute(
        insert(world_events).values(
            event_type=entry.kind,
            description=entry.description,
            data=json.dumps(entry.data),
            created_at=now,
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None  # noqa: S101
    return int(pk[0])


class _StateBody(NamedTuple):
    """A serialized ``GET /api/world/state`` answer and when it stops being current."""

    key: tuple[int, int]
    built_at: float
    valid_until: float
    body: bytes


class WorldService:
    """Shards, reality, Aetherfall and the event log of one lobby."""

    name = "world"

    def __init__(self) -> None:
        self._slot = ContextSlot("the world service")
        self._shared = SharedState("world", self._reload)
        self._task: asyncio.Task[None] | None = None
        self.version = 0
        """Bumped by every change to what ``GET /api/world/state`` shows (but the clock)."""
        self._state_body: _StateBody | None = None
        self._board: ShardBoard | None = None
        self._anchor = 0.0
        self.aetherfall_count = 0
        self._active: AetherfallEvent | None = None
        self._end_announced = True
        self._recent: deque[EventOut] = deque(maxlen=_RECENT)

    @property
    def board(self) -> ShardBoard | None:
        return self._board

    @board.setter
    def board(self, value: ShardBoard | None) -> None:
        self._board = value
        self.changed()

    @property
    def anchor(self) -> float:
        """When the Aetherfall interval started counting (the last one, or the first start)."""
        return self._anchor

    @anchor.setter
    def anchor(self, value: float) -> None:
        self._anchor = value
        self.changed()

    @property
    def active(self) -> AetherfallEvent | None:
        return self._active

    @active.setter
    def active(self, value: AetherfallEvent | None) -> None:
        self._active = value
        self.changed()

    def changed(self) -> None:
        """The world state changed: the cached ``GET /api/world/state`` body is stale."""
        self.version += 1
        self._state_body = None

    # -- lifecycle --------------------------------------------------------------------

    async def setup(self, ctx: LobbyContext) -> None:
        self._slot.attach(ctx)
        await self._load(ctx)
        self._shared.attach(ctx.hub.broker, ctx.db)
        register_handler(ctx, MessageType.SHARD_CAPTURE, self.on_capture)
        ctx.hub.on_join(self._on_join)
        api = ctx.api
        api.route(
            "GET",
            "/api/world/state",
            response_model=WorldStateOut,
            summary="World state: reality, shards, factions, Aetherfall, recent events",
            tags=("world",),
        )(self.get_state)
        api.route(
            "GET",
            "/api/world/shards",
            response_model=ShardsOut,
            summary="Every Crystal Shard and its owner",
            tags=("world",),
        )(self.get_shards)
        api.route(
            "GET",
            "/api/world/events",
            query_model=EventsQuery,
            response_model=EventsOut,
            summary="The world event log, newest first (paged with ?before=)",
            tags=("world",),
        )(self.get_events)
        self._task = asyncio.create_task(self._ticker(), name="lobby-world-ticker")

    async def close(self) -> None:
        await self._shared.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._slot.detach()

    # -- capture ------------------------------------------------------------------------

    async def on_capture(self, conn: Connection, msg: ShardCaptureMessage) -> None:
        ctx = self._slot.ctx
        me = acting_character(
            conn, claimed=msg.character_id, refusal="you can only capture as your own character"
        )
        row = await stored_character(ctx, me.id)
        async with self._shared.change():
            board = self._board_now()
            now = ctx.clock()
            outcome = board.capture(
                msg.shard_id,
                character_id=row.id,
                faction=row.faction,
                location_id=row.location_id,
                now=now,
                character_name=row.name,
            )
            self.changed()
            shard = outcome.shard
            shift = outcome.reality_shift
            entries = capture_entries(
                outcome, character_id=row.id, character_name=row.name, faction=row.faction
            )
            try:
                async with self._shared.write() as db:
                    await self._save_shard(db, outcome.state)
                    if shift is not None:
                        await _put_meta(db, "reality", board.reality)
                    logged = [(await append_event(db, e, now), e) for e in entries]
            except BaseException:
                await self._load(ctx)
                raise
            for event_id, entry in logged:
                self._remember(event_id, entry, now)
        hub = ctx.hub
        hub.broadcast(shard_captured_message(outcome, row.name))
        hub.broadcast(shard_status_message(board, [shard.id]))
        if shift is not None:
            hub.broadcast(reality_shift_message(shift))
            hub.broadcast(reality_shift_announcement(shift))
        ack(
            conn,
            msg.message_id,
            ShardCaptureAck(shard_id=shard.id, faction=row.faction, current_reality=board.reality),
        )
        log.info("character %d captured shard %d for %s", row.id, shard.id, row.faction)

    # -- Aetherfall ---------------------------------------------------------------------

    @property
    def next_aetherfall_at(self) -> float:
        return self.anchor + self._slot.ctx.world.rules.aetherfall_interval_seconds

    async def tick(self) -> AetherfallEvent | None:
        """End an Aetherfall that ran out, fire one that is due; return the one fired."""
        ctx = self._slot.ctx
        if not self._due(ctx.clock()):
            # nothing due as this process knows the world; another process may have done it
            # already (then the world re-read under the lock says so), never the reverse
            return None
        async with self._shared.change():
            now = ctx.clock()
            if self._ending_due(now):
                assert self.active is not None  # noqa: S101 - _ending_due checked it
                await self._end_aetherfall(ctx, self.active, now)
            if now < self.next_aetherfall_at:
                return None
            return await self._fire(ctx, now)

    def _ending_due(self, now: float) -> bool:
        return self.active is not None and not self._end_announced and now >= self.active.ends_at

    def _due(self, now: float) -> bool:
        return self._ending_due(now) or now >= self.next_aetherfall_at

    async def _reload(self) -> None:
        """Re-read the world (another lobby process may have changed it)."""
        ctx = self._slot.current
        if ctx is not None:
            await self._load(ctx)

    async def _fire(self, ctx: LobbyContext, now: float) -> AetherfallEvent:
        board = self._board_now()
        if self.active is not None and not self._end_announced:
            await self._end_aetherfall(ctx, self.active, now)
        count = self.aetherfall_count + 1
        event = aetherfall_event(ctx.world, seed=count, now=now)
        entry = aetherfall_entry(event, number=count)
        try:
            async with self._shared.write() as db:
                released = board.apply_aetherfall(event)
                self.changed()
                for state in released:
                    await self._save_shard(db, state)
                if event.damage > 0:
                    hurt = characters.c.health - event.damage
                    await db.execute(
                        update(characters)
                        .where(
                            characters.c.location_id.in_(event.struck_location_ids),
                            characters.c.health > 1,
                        )
                        .values(health=case((hurt < 1, 1), else_=hurt))
                    )
                await _put_meta(db, "aetherfall_anchor", now)
                await _put_meta(db, "aetherfall_count", count)
                await _put_meta(db, "aetherfall_active", event.to_dict())
                await _put_meta(db, "aetherfall_end_announced", False)
                event_id = await append_event(db, entry, now)
        except BaseException:
            await self._load(ctx)
            raise
        self.anchor = now
        self.aetherfall_count = count
        self.active = event
        self._end_announced = False
        self._remember(event_id, entry, now)
        hub = ctx.hub
        hub.broadcast(aetherfall_message(event, active=True))
        struck = set(event.struck_location_ids)
        await push_character_updates(
            ctx,
            [
                p.character.id
                for p in hub.presences()
                if p.character is not None and p.character.location_id in struck
            ],
        )
        if event.released_shard_ids:
            hub.broadcast(shard_status_message(board, event.released_shard_ids))
        hub.broadcast(aetherfall_announcement(event))
        log.info("Aetherfall #%d at location %d", count, event.epicentre_id)
        return event

    async def _end_aetherfall(self, ctx: LobbyContext, event: AetherfallEvent, now: float) -> None:
        entry = aetherfall_end_entry(event)
        async with self._shared.write() as db:
            await _put_meta(db, "aetherfall_end_announced", True)
            event_id = await append_event(db, entry, now)
        self._end_announced = True
        self._remember(event_id, entry, now)
        ctx.hub.broadcast(aetherfall_message(event, active=False))

    async def _ticker(self) -> None:
        ctx = self._slot.ctx
        while True:
            await asyncio.sleep(ctx.settings.maintenance_interval)
            try:
                await self.tick()
            except Exception:
                log.exception("world tick failed")

    # -- REST -----------------------------------------------------------------------------

    async def get_state(self, req: ApiRequest) -> web.Response:
        req.require_session()
        return web.Response(
            body=self.state_body(), content_type="application/json", charset="utf-8"
        )

    def state_body(self) -> bytes:
        """``state_out()`` as JSON, cached until the world, the online count or time moves on."""
        ctx = self._slot.ctx
        now = ctx.clock()
        key = (self.version, ctx.hub.presence_version)
        cached = self._state_body
        if cached is not None and cached.key == key and cached.built_at <= now < cached.valid_until:
            return cached.body
        out = self.state_out(now)
        until = [s.capturable_at for s in out.shards if s.capturable_at is not None]
        if out.aetherfall is not None:
            until.append(out.aetherfall.ends_at)
        body = out.model_dump_json().encode()
        self._state_body = _StateBody(key, now, min(until, default=math.inf), body)
        return body

    async def get_shards(self, req: ApiRequest) -> ShardsOut:
        req.require_session()
        board = self._board_now()
        now = self._slot.ctx.clock()
        return ShardsOut(
            shards=[ShardOut.model_validate(s) for s in board.snapshot(now)],
            faction_shards=board.counts(),
        )

    async def get_events(self, req: ApiRequest) -> EventsOut:
        req.require_session()
        query = req.query_as(EventsQuery)
        ctx = self._slot.ctx
        stmt = select(world_events).order_by(world_events.c.id.desc()).limit(query.limit + 1)
        if query.before is not None:
            stmt = stmt.where(world_events.c.id < query.before)
        async with ctx.db.read() as db:
            rows = (await db.execute(stmt)).all()
        events = [_event_out(r._mapping) for r in rows[: query.limit]]
        more = len(rows) > query.limit
        return EventsOut(events=events, next_before=events[-1].id if more and events else None)

    def state_out(self, now: float | None = None) -> WorldStateOut:
        ctx = self._slot.ctx
        board = self._board_now()
        if now is None:
            now = ctx.clock()
        active = self._active_at(now)
        return WorldStateOut(
            current_reality=board.reality,
            realities=list(ctx.world.realities),
            faction_shards=board.counts(),
            shards=[ShardOut.model_validate(s) for s in board.snapshot(now)],
            aetherfall_active=active is not None,
            aetherfall=AetherfallOut.model_validate(active.to_dict()) if active else None,
            next_aetherfall_at=self.next_aetherfall_at,
            online_players=ctx.hub.players_in_cluster,
            recent_events=list(reversed(self._recent)),
        )

    # -- hooks and helpers ----------------------------------------------------------------

    async def _on_join(self, presence: Presence) -> None:
        ctx = self._slot.ctx
        now = ctx.clock()
        msg = world_state_message(
            self._board_now(),
            aetherfall=self._active_at(now),
            online_players=ctx.hub.players_in_cluster,
            recent_events=[
                WorldEvent(
                    event_type=e.event_type, description=e.description, timestamp=e.timestamp
                )
                for e in reversed(self._recent)
            ],
        )
        ctx.hub.send_to_session(presence.session_id, msg)

    def _active_at(self, now: float) -> AetherfallEvent | None:
        if self.active is not None and now < self.active.ends_at:
            return self.active
        return None

    def _remember(self, event_id: int, entry: LogEntry, now: float) -> None:
        self._recent.append(
            EventOut(
                id=event_id,
                event_type=entry.kind,
                description=entry.description,
                data=entry.data,
                timestamp=now,
            )
        )
        self.changed()

    async def _load(self, ctx: LobbyContext) -> None:
        now = ctx.clock()
        async with ctx.db.read() as db:
            meta = {
                r.key: json.loads(r.value) for r in (await db.execute(select(world_meta))).all()
            }
            owners = (await db.execute(select(shard_owners))).all()
            recent = (
                await db.execute(
                    select(world_events).order_by(world_events.c.id.desc()).limit(_RECENT)
                )
            ).all()
        states = [
            ShardState(
                shard_id=int(r.shard_id),
                owner=r.owner,
                captured_at=r.captured_at,
                captured_by=r.captured_by,
                captured_by_name=r.captured_by_name,
            )
            for r in owners
        ]
        self.board = ShardBoard(ctx.world, reality=meta.get("reality"), states=states)
        self.aetherfall_count = int(meta.get("aetherfall_count", 0))
        self._end_announced = bool(meta.get("aetherfall_end_announced", True))
        active = meta.get("aetherfall_active")
        self.active = _event_from(active) if isinstance(active, dict) else None
        self._recent.clear()
        for r in reversed(recent):
            self._recent.append(_event_out(r._mapping))
        self.changed()
        if "aetherfall_anchor" in meta:
            self.anchor = float(meta["aetherfall_anchor"])
        else:
            self.anchor = now
            async with ctx.db.write() as db:
                await _put_meta(db, "aetherfall_anchor", now)
                if "reality" not in meta:
                    await _put_meta(db, "reality", self.board.reality)

    async def _save_shard(self, db: AsyncConnection, state: ShardState) -> None:
        await db.execute(delete(shard_owners).where(shard_owners.c.shard_id == state.shard_id))
        if state.owner is not None:
            await db.execute(
                insert(shard_owners).values(
                    shard_id=state.shard_id,
                    owner=state.owner,
                    captured_at=state.captured_at,
                    captured_by=state.captured_by,
                    captured_by_name=state.captured_by_name,
                )
            )

    def _board_now(self) -> ShardBoard:
        if self._board is None:
            raise LobbyError("the world is not loaded", code=ErrorCode.UNAVAILABLE)
        return self._board


async def _put_meta(db: AsyncConnection, key: str, value: Any) -> None:
    await db.execute(delete(world_meta).where(world_meta.c.key == key))
    await db.execute(insert(world_meta).values(key=key, value=json.dumps(value)))


def _event_out(m: Any) -> EventOut:
    return EventOut(
        id=int(m["id"]),
        event_type=str(m["event_type"]),
        description=str(m["description"]),
        data=json.loads(m["data"]) if m["data"] else None,
        timestamp=float(m["created_at"]),
    )


def _event_from(d: dict[str, Any]) -> AetherfallEvent:
    return AetherfallEvent(
        seed=int(d["seed"]),
        at=float(d["at"]),
        ends_at=float(d["ends_at"]),
        epicentre_id=int(d["epicentre_id"]),
        epicentre_name=str(d["epicentre_name"]),
        struck_location_ids=tuple(int(i) for i in d["struck_location_ids"]),
        damage=int(d["damage"]),
        released_shard_ids=tuple(int(i) for i in d["released_shard_ids"]),
    )
