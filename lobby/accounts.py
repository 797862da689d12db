"""Accounts: registration, password verification and login lockout.

Passwords are hashed with argon2id off the event loop by :class:`lobby.passwords.PasswordHashing`
(worker processes behind a bounded FIFO queue). A login for an unknown username verifies
against a dummy hash, so both failures cost the same.

Lockout (per account and per source address) counts failed logins within
``login_failure_window``; reaching the limit refuses further attempts for
``login_lockout`` seconds with ``ACCOUNT_LOCKED`` and a ``retry_after`` hint,
even with the right password.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from lobby.config import Clock, LobbySettings
from lobby.passwords import PasswordHashing
from lobby.ratelimit import Lockout
from lobby.storage import Database, accounts
from protocol.errors import ErrorCode, LobbyError

__all__ = ["Account", "AccountService"]

log = logging.getLogger("lobby.accounts")


@dataclass(frozen=True, slots=True)
class Account:
    """A registered account (never carries the password hash out of this module)."""

    id: int
    username: str
    created_at: float
    is_admin: bool = False


class AccountService:
    """Register accounts and check logins."""

    def __init__(self, db: Database, settings: LobbySettings, clock: Clock) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self.hashing = PasswordHashing(settings)
        self._account_lockout = Lockout(
            settings.login_max_failures_per_account,
            settings.login_failure_window,
            settings.login_lockout,
            clock,
        )
        self._address_lockout = Lockout(
            settings.login_max_failures_per_address,
            settings.login_failure_window,
            settings.login_lockout,
            clock,
        )

    async def register(self, username: str, password: str) -> Account:
        """Create an account; ``USERNAME_TAKEN`` if the name exists in any letter case."""
        key = username.casefold()
        password_hash = await self.hashing.hash(password)
        now = self._clock()
        try:
            async with self._db.write() as conn:
                result = await conn.execute(
                    insert(accounts).values(
                        username=username,
                        username_key=key,
                        password_hash=password_hash,
                        created_at=now,
                    )
                )
                pk = result.inserted_primary_key
                assert pk is not None  # noqa: S101 - an insert always has one
                account_id = int(pk[0])
        except IntegrityError:
            raise LobbyError(
                "that username is taken",
                code=ErrorCode.USERNAME_TAKEN,
                details={"username": username},
            ) from None
        log.info("account=%d registered as %r", account_id, username)
        return Account(account_id, username, now, self._settings.is_admin(username))

    async def authenticate(self, username: str, password: str, address: str) -> Account:
        """Check a login; raise ``INVALID_CREDENTIALS`` or ``ACCOUNT_LOCKED`` (with retry_after)."""
        key = username.casefold()
        locked = max(
            self._account_lockout.locked_for(key), self._address_lockout.locked_for(address)
        )
        if locked > 0:
            raise LobbyError(
                "too many failed logins: try again later",
                code=ErrorCode.ACCOUNT_LOCKED,
                details={"retry_after": round(locked, 3)},
            )
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        accounts.c.id,
                        accounts.c.username,
                        accounts.c.password_hash,
                        accounts.c.created_at,
                    ).where(accounts.c.username_key == key)
                )
            ).first()
        ok = await self.hashing.verify(row.password_hash if row else None, password)
        if row is None or not ok:
            locked = max(
                self._account_lockout.record_failure(key),
                self._address_lockout.record_failure(address),
            )
            if locked:
                log.warning("login locked for account %r / address %s", username, address)
            raise LobbyError("wrong username or password", code=ErrorCode.INVALID_CREDENTIALS)
        self._account_lockout.reset(key)
        now = self._clock()
        values: dict[str, object] = {"last_login_at": now}
        if self.hashing.needs_rehash(row.password_hash):
            values["password_hash"] = await self.hashing.hash(password)
        async with self._db.write() as conn:
            await conn.execute(update(accounts).where(accounts.c.id == row.id).values(**values))
        return Account(
            int(row.id), row.username, float(row.created_at), self._settings.is_admin(row.username)
        )

    async def close(self) -> None:
        await self.hashing.close()
