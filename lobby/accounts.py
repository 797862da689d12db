"""Accounts: registration, password verification and login throttling.

Passwords are hashed with argon2id off the event loop by :class:`lobby.passwords.PasswordHashing`
(worker processes behind a bounded FIFO queue). A login for an unknown username verifies
against a dummy hash, so both failures cost the same.

Guessing is throttled by :class:`~lobby.ratelimit.LoginThrottle` (its docstring
has the policy): a refused attempt is answered ``ACCOUNT_LOCKED`` (HTTP 429) with
``details.retry_after`` and ``details.reason`` before any password is checked. No
address can lock an account against its owner: a lock is per (account, address),
and the account-wide hourly budget only refuses addresses that never logged in to
(or registered) the account.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from lobby.config import Clock, LobbySettings
from lobby.metrics import LobbyMetrics
from lobby.passwords import PasswordHashing
from lobby.ratelimit import LoginAttempt, LoginPolicy, LoginThrottle
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

    def __init__(
        self,
        db: Database,
        settings: LobbySettings,
        clock: Clock,
        metrics: LobbyMetrics | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._metrics = metrics or LobbyMetrics()
        self.hashing = PasswordHashing(settings, self._metrics)
        self.login_checks: list[Callable[[Account], Awaitable[None]]] = []
        """Run after the password checked out; one may refuse the login (e.g. a ban)."""
        self.throttle = LoginThrottle(
            LoginPolicy(
                pair_failures=settings.login_max_failures_per_account,
                pair_window=settings.login_failure_window,
                pair_lockout=settings.login_lockout,
                account_failures_per_hour=settings.login_account_failures_per_hour,
                address_failures_per_hour=settings.login_max_failures_per_address,
                known_addresses=settings.login_known_addresses,
            ),
            clock,
        )

    async def register(self, username: str, password: str, address: str | None = None) -> Account:
        """Create an account; ``USERNAME_TAKEN`` if the name exists in any letter case.

        ``address`` (the registering client's) becomes a known-good address of the
        account: it chose the password.
        """
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
        if address is not None:
            await self.throttle.remember(key, address)
        log.info("account=%d registered as %r", account_id, username)
        return Account(account_id, username, now, self._settings.is_admin(username))

    async def authenticate(self, username: str, password: str, address: str) -> Account:
        """Check a login; raise ``INVALID_CREDENTIALS`` or ``ACCOUNT_LOCKED`` (with retry_after)."""
        key = username.casefold()
        attempt = await self.throttle.admit(key, address)
        if not isinstance(attempt, LoginAttempt):
            self._metrics.login("locked")
            raise LobbyError(
                "too many failed logins: try again later",
                code=ErrorCode.ACCOUNT_LOCKED,
                details={"retry_after": round(attempt.retry_after, 3), "reason": attempt.reason},
            )
        try:
            account = await self._check_password(key, password)
            if account is not None:
                for check in self.login_checks:
                    await check(account)
        except BaseException:
            await self.throttle.release(attempt)
            raise
        if account is None:
            if await self.throttle.failed(attempt):
                log.warning("address %s locked out of account %r after failed logins", address, key)
            self._metrics.login("failed")
            raise LobbyError("wrong username or password", code=ErrorCode.INVALID_CREDENTIALS)
        await self.throttle.succeeded(attempt)
        self._metrics.login("ok")
        return account

    async def _check_password(self, key: str, password: str) -> Account | None:
        """The account if ``password`` is its password (rehashed if due), else None."""
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
            return None
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
