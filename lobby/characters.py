"""Characters: the rules for creating them, ownership checks, listing and deletion.

Name rules: 3 to 20 characters, a letter first, then letters, digits, ``_``
or ``-`` (ASCII), unique regardless of letter case across the whole lobby.
Faction and class must be ones the world defines; an account holds at most
``world.rules.character_limit_per_account`` characters. New characters start
at ``world.start_location_id`` with the class's level-1 health and mana and
``world.rules.starting_gold``.

Ownership: every lookup on behalf of an account goes through
:meth:`CharacterService.get_owned`, which answers ``NOT_FOUND`` both for a
missing id and for another account's character, so ids are never confirmed
to someone who does not own them.

Hooks for services (run inside the same write transaction as the change, so a
failing hook undoes it): ``create_hooks`` (e.g. starting inventory) and
``delete_hooks`` (e.g. leaving a party), each ``async (conn, character) -> None``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from lobby.config import Clock
from lobby.game.world import WorldDefinition
from lobby.storage import Database, accounts, characters
from protocol.errors import ErrorCode, LobbyError

__all__ = ["NAME_PATTERN", "Character", "CharacterHook", "CharacterService"]

log = logging.getLogger("lobby.characters")

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{2,19}$"
_NAME_RE = re.compile(NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class Character:
    """One character row."""

    id: int
    account_id: int
    name: str
    faction: str
    character_class: str
    level: int
    experience: int
    health: int
    max_health: int
    mana: int
    max_mana: int
    location_id: int
    gold: int
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: Any) -> Character:
        m = row._mapping
        return cls(**{name: m[name] for name in _FIELDS})


_FIELDS = tuple(Character.__dataclass_fields__)

CharacterHook = Callable[[AsyncConnection, Character], Awaitable[None]]


class CharacterService:
    """Character rules and storage."""

    def __init__(self, db: Database, world: WorldDefinition, clock: Clock) -> None:
        self._db = db
        self._world = world
        self._clock = clock
        self.create_hooks: list[CharacterHook] = []
        self.delete_hooks: list[CharacterHook] = []

    async def list(self, account_id: int) -> list[Character]:
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(characters)
                .where(characters.c.account_id == account_id)
                .order_by(characters.c.id)
            )
            return [Character.from_row(r) for r in rows]

    async def get(self, character_id: int) -> Character | None:
        """Any character by id (for services; not an ownership check)."""
        async with self._db.read() as conn:
            row = (
                await conn.execute(select(characters).where(characters.c.id == character_id))
            ).first()
        return Character.from_row(row) if row else None

    async def get_owned(self, account_id: int, character_id: int) -> Character:
        """The character if ``account_id`` owns it, else NOT_FOUND (whether or not it exists)."""
        character = await self.get(character_id)
        if character is None or character.account_id != account_id:
            raise _not_found(character_id)
        return character

    async def create(
        self, account_id: int, name: str, faction: str, character_class: str
    ) -> Character:
        """Create a character after checking every rule."""
        name = name.strip()
        if not _NAME_RE.fullmatch(name):
            raise LobbyError(
                "a character name is 3-20 characters: a letter, then letters, digits, _ or -",
                code=ErrorCode.INVALID_NAME,
                details={"name": name[:64]},
            )
        if faction not in self._world.faction_names():
            raise LobbyError(
                f"unknown faction {faction[:64]!r}",
                code=ErrorCode.VALIDATION_ERROR,
                details={"faction": faction[:64], "allowed": sorted(self._world.faction_names())},
            )
        class_def = self._world.class_def(character_class)
        if class_def is None:
            raise LobbyError(
                f"unknown class {character_class[:64]!r}",
                code=ErrorCode.VALIDATION_ERROR,
                details={
                    "character_class": character_class[:64],
                    "allowed": sorted(self._world.class_names()),
                },
            )
        limit = self._world.rules.character_limit_per_account
        now = self._clock()
        try:
            async with self._db.write() as conn:
                # Lock the account row (PostgreSQL) so two creations cannot both pass the limit.
                await conn.execute(
                    select(accounts.c.id).where(accounts.c.id == account_id).with_for_update()
                )
                count = (
                    await conn.execute(
                        select(func.count())
                        .select_from(characters)
                        .where(characters.c.account_id == account_id)
                    )
                ).scalar_one()
                if count >= limit:
                    raise LobbyError(
                        f"an account may hold at most {limit} characters",
                        code=ErrorCode.CHARACTER_LIMIT,
                        details={"limit": limit},
                    )
                values = {
                    "account_id": account_id,
                    "name": name,
                    "name_key": name.casefold(),
                    "faction": faction,
                    "character_class": character_class,
                    "level": 1,
                    "experience": 0,
                    "health": class_def.base_health,
                    "max_health": class_def.base_health,
                    "mana": class_def.base_mana,
                    "max_mana": class_def.base_mana,
                    "location_id": self._world.start_location_id,
                    "gold": self._world.rules.starting_gold,
                    "created_at": now,
                }
                result = await conn.execute(insert(characters).values(**values))
                pk = result.inserted_primary_key
                assert pk is not None  # noqa: S101 - an insert always has one
                values.pop("name_key")
                character = Character(id=int(pk[0]), **values)  # type: ignore[arg-type]
                for hook in self.create_hooks:
                    await hook(conn, character)
        except IntegrityError:
            raise LobbyError(
                "that character name is taken",
                code=ErrorCode.NAME_TAKEN,
                details={"name": name},
            ) from None
        log.info("account=%d created character %d (%s)", account_id, character.id, name)
        return character

    async def delete(self, account_id: int, character_id: int) -> Character:
        """Delete an owned character (NOT_FOUND otherwise); sessions that selected it unselect."""
        async with self._db.write() as conn:
            row = (
                await conn.execute(select(characters).where(characters.c.id == character_id))
            ).first()
            if row is None or row.account_id != account_id:
                raise _not_found(character_id)
            character = Character.from_row(row)
            for hook in self.delete_hooks:
                await hook(conn, character)
            await conn.execute(delete(characters).where(characters.c.id == character_id))
        log.info("account=%d deleted character %d", account_id, character_id)
        return character


def _not_found(character_id: int) -> LobbyError:
    return LobbyError(
        "no such character on this account",
        code=ErrorCode.NOT_FOUND,
        details={"character_id": character_id},
    )
