"""Trades and fights held in the database, so that every lobby process can carry them on.

An *engagement* (a trade or a fight, its ``kind``) is one ``engagements`` row: the
state machine's state as JSON (:meth:`lobby.game.trade.Trade.to_dict`,
:meth:`lobby.game.combat.Combat.to_dict`) and a ``version`` bumped by every change.
No lobby process owns it: whichever process holds the acting player runs the action,
and a process that dies takes nothing with it.

Every action is one write transaction (:meth:`lobby.storage.Database.write`)::

    hold()  read the row, locked: FOR UPDATE on PostgreSQL; on SQLite the lobby's
            single writer (one process) and the conditional save (several) stand in
       |    the pure state machine applies the action to the decoded state
       v
    save()  UPDATE ... WHERE version = <the version read>: exactly one row, else
            the action is refused (``CONFLICT``) and the transaction rolls back
    drop()  (instead of save, when the engagement is over) delete it and its members

so two actions on one engagement, from any processes, run one after the other on
the latest state, and an action's effects (items, gold, health) commit with the
state change or not at all. ``engagement_members`` has one row per ``(kind,
character)``: its primary key keeps a character in one trade and one fight at a
time across the cluster (:meth:`EngagementStore.insert` refuses a busy one).

:class:`Absences` finds participants who are gone for good: online on no process
(nor inside a reconnect grace) for ``reconnect_grace`` seconds, which is how the
players of a killed process that never come back are noticed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from lobby.storage.game_schema import engagement_members, engagements
from protocol.errors import ErrorCode, LobbyError

__all__ = ["Absences", "EngagementStore", "Held"]


@dataclass(slots=True)
class Held:
    """An engagement read inside a write transaction: its id, state and the version read."""

    id: str
    data: dict[str, Any]
    version: int


class EngagementStore:
    """The engagements of one ``kind`` (``"trade"``, ``"combat"``) in the database.

    ``busy_code`` and ``busy_text`` (formatted with ``character_id``) are the refusal
    when a character is already in an engagement of this kind.
    """

    def __init__(self, kind: str, *, busy_code: ErrorCode, busy_text: str) -> None:
        self.kind = kind
        self._busy_code = busy_code
        self._busy_text = busy_text

    async def insert(
        self,
        db: AsyncConnection,
        engagement_id: str,
        members: Iterable[int],
        data: dict[str, Any],
        now: float,
    ) -> None:
        """Store a new engagement of ``members`` (refused if one of them is busy)."""
        ids = list(members)
        taken = await self.busy(db, ids)
        if taken is not None:
            self._refuse_busy(taken)
        try:
            await db.execute(
                insert(engagements).values(
                    id=engagement_id,
                    kind=self.kind,
                    data=json.dumps(data),
                    version=1,
                    updated_at=now,
                )
            )
            await db.execute(
                insert(engagement_members),
                [
                    {"kind": self.kind, "character_id": cid, "engagement_id": engagement_id}
                    for cid in ids
                ],
            )
        except IntegrityError:
            # another process took one of them between the check and the insert (or the id)
            raise LobbyError(
                "one of the characters was just engaged elsewhere; try again",
                code=self._busy_code,
            ) from None

    async def busy(self, db: AsyncConnection, character_ids: Iterable[int]) -> int | None:
        """The first of ``character_ids`` already in an engagement of this kind, or None."""
        ids = list(character_ids)
        rows = await db.execute(
            select(engagement_members.c.character_id).where(
                engagement_members.c.kind == self.kind,
                engagement_members.c.character_id.in_(ids),
            )
        )
        found = {int(r[0]) for r in rows}
        return next((cid for cid in ids if cid in found), None)

    async def of(self, db: AsyncConnection, character_id: int) -> str | None:
        """The id of ``character_id``'s engagement of this kind, or None."""
        row = (
            await db.execute(
                select(engagement_members.c.engagement_id).where(
                    engagement_members.c.kind == self.kind,
                    engagement_members.c.character_id == character_id,
                )
            )
        ).first()
        return None if row is None else str(row[0])

    async def hold(self, db: AsyncConnection, engagement_id: str) -> Held | None:
        """Read ``engagement_id`` for a change (locked until the transaction ends)."""
        row = (
            await db.execute(
                select(engagements.c.data, engagements.c.version)
                .where(engagements.c.id == engagement_id, engagements.c.kind == self.kind)
                .with_for_update()
            )
        ).first()
        if row is None:
            return None
        return Held(engagement_id, json.loads(row[0]), int(row[1]))

    async def read(self, db: AsyncConnection, engagement_id: str) -> dict[str, Any] | None:
        """The stored state of ``engagement_id`` (no lock: for reads only)."""
        row = (
            await db.execute(
                select(engagements.c.data).where(
                    engagements.c.id == engagement_id, engagements.c.kind == self.kind
                )
            )
        ).first()
        return None if row is None else dict(json.loads(row[0]))

    async def all(self, db: AsyncConnection) -> list[tuple[str, dict[str, Any]]]:
        """Every engagement of this kind: ``(id, state)`` pairs (for the sweep)."""
        rows = await db.execute(
            select(engagements.c.id, engagements.c.data)
            .where(engagements.c.kind == self.kind)
            .order_by(engagements.c.id)
        )
        return [(str(r[0]), dict(json.loads(r[1]))) for r in rows]

    async def save(self, db: AsyncConnection, held: Held, now: float) -> None:
        """Write ``held.data`` back if nobody changed the row since :meth:`hold`."""
        result = await db.execute(
            update(engagements)
            .where(engagements.c.id == held.id, engagements.c.version == held.version)
            .values(data=json.dumps(held.data), version=held.version + 1, updated_at=now)
        )
        if result.rowcount != 1:
            raise LobbyError(
                "it changed meanwhile; try again",
                code=ErrorCode.CONFLICT,
                details={"id": held.id},
            )
        held.version += 1

    async def drop(self, db: AsyncConnection, held: Held) -> None:
        """Delete the finished engagement and free its members (same version check)."""
        await db.execute(
            delete(engagement_members).where(engagement_members.c.engagement_id == held.id)
        )
        result = await db.execute(
            delete(engagements).where(
                engagements.c.id == held.id, engagements.c.version == held.version
            )
        )
        if result.rowcount != 1:
            raise LobbyError(
                "it changed meanwhile; try again",
                code=ErrorCode.CONFLICT,
                details={"id": held.id},
            )

    def _refuse_busy(self, character_id: int) -> None:
        raise LobbyError(
            self._busy_text.format(character_id=character_id),
            code=self._busy_code,
            details={"character_id": character_id},
        )


class Absences:
    """Participants online on no lobby process, and since when (as this process saw it)."""

    def __init__(self) -> None:
        self._since: dict[int, float] = {}

    def gone(
        self,
        character_ids: Iterable[int],
        *,
        present: Callable[[int], bool],
        now: float,
        grace: float,
    ) -> set[int]:
        """Which of ``character_ids`` have been absent for ``grace`` seconds or more.

        Call it with every character still engaged: the others are forgotten, and a
        character seen present again starts from zero.
        """
        ids = set(character_ids)
        for cid in list(self._since):
            if cid not in ids:
                del self._since[cid]
        out = set()
        for cid in ids:
            if present(cid):
                self._since.pop(cid, None)
                continue
            since = self._since.setdefault(cid, now)
            if now - since >= grace:
                out.add(cid)
        return out
