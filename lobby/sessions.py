"""Sessions: random bearer tokens, stored as SHA-256, with a sliding expiry.

A login creates a session and returns its token (``secrets.token_urlsafe(32)``);
only ``sha256(token)`` is stored, so a leaked database does not leak live
tokens. Each authenticated REST call or WS message slides the expiry to
``now + session_ttl``; the new expiry is written at most every
``session_touch_interval`` seconds (so a session may expire up to that much
earlier than its last use + ttl). Logout deletes the row; expired rows are
deleted by :meth:`SessionStore.cleanup`, run periodically by the server.
Sessions are rows in the database, so they survive a lobby restart. A session
id is never reused (see :data:`lobby.storage.legacy.NEVER_REUSED_IDS`), and anything a session
can resume is bound to its account and :attr:`Session.token_hash` as well.

The database is authoritative; :meth:`SessionStore.authenticate` keeps what it
read in a bounded in-memory cache (by token hash) and answers from it for at
most ``min(session_touch_interval, RECHECK_INTERVAL)`` seconds before reading
the row again (and sliding it when due). Changes made by this process (logout,
character selection, a failed touch) drop the affected entries at once, and the
expiry is checked on every call; a revocation made by another lobby process
sharing the database is seen within ``RECHECK_INTERVAL`` seconds.

Cache misses that arrive together (a reconnect storm after a lobby restart) share
database reads: the tokens waiting while a read runs are looked up by the next
one, up to ``LOOKUP_BATCH`` tokens per ``SELECT ... WHERE token_hash IN (...)``,
and the sessions among them that are due a slide are slid by one ``UPDATE``. While
requests keep arriving during the reads, each next read first waits
``BACKLOG_LINGER`` seconds for more to join it.
Each caller still gets exactly what a read of its own would have given.

A session also records the selected character and the peer information sent
with the selection (public key, box key, endpoints), for the peer directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, insert, select, update

from lobby.accounts import Account
from lobby.config import Clock, LobbySettings
from lobby.storage import Database, accounts, sessions
from protocol.errors import ErrorCode, LobbyError

__all__ = [
    "BACKLOG_LINGER",
    "LOOKUP_BATCH",
    "RECHECK_INTERVAL",
    "Session",
    "SessionStore",
    "hash_token",
]

log = logging.getLogger("lobby.sessions")

_MAX_TOKEN_LENGTH = 256

RECHECK_INTERVAL = 5.0
"""At most this many seconds between database reads of a cached session's row."""

_CACHE_MAX = 100_000

K = TypeVar("K")
V = TypeVar("V")

LOOKUP_BATCH = 256
"""At most this many sessions per batched read (by token hash) or slide (by id): well
under SQLite's limit of bound parameters."""

BACKLOG_LINGER = 0.01
"""While requests keep coming (some arrived during the last fetch), wait this long before
the next fetch so that more join it. A fetch costs the event loop about a millisecond
however few keys it carries (a reconnect storm's batches stayed near ten sessions, 150 us
of loop time each); a lone request never waits."""


class _Batches(Generic[K, V]):
    """Requests for keys that arrive together, answered by one ``fetch`` call per batch.

    :meth:`get` queues its key; a task runs ``fetch`` on up to ``LOOKUP_BATCH`` queued
    keys at a time while any are queued, so the keys asked for while one fetch runs go
    together into the next one. ``fetch`` answers every key it is given; its exception
    reaches every caller of that batch.
    """

    def __init__(self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]], name: str) -> None:
        self._fetch = fetch
        self._name = name
        self._waiting: dict[K, list[asyncio.Future[V]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V:
        fut: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(fut)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)
        return await fut

    async def _run(self) -> None:
        try:
            backlog = False
            while self._waiting:
                if backlog and len(self._waiting) < LOOKUP_BATCH:
                    await asyncio.sleep(BACKLOG_LINGER)
                keys = list(itertools.islice(self._waiting, LOOKUP_BATCH))
                waiters = [self._waiting.pop(k) for k in keys]
                try:
                    found = await self._fetch(keys)
                except Exception as exc:  # each caller meets the failure of its fetch
                    for futs in waiters:
                        for fut in futs:
                            if not fut.done():
                                fut.set_exception(exc)
                    continue
                except BaseException:
                    for futs in waiters:
                        for fut in futs:
                            fut.cancel()
                    raise
                for key, futs in zip(keys, waiters, strict=True):
                    for fut in futs:
                        if not fut.done():  # a caller that gave up (cancelled) is skipped
                            fut.set_result(found[key])
                backlog = bool(self._waiting)
        finally:
            self._task = None
            for futs in self._waiting.values():  # only left behind when cancelled
                for fut in futs:
                    fut.cancel()
            self._waiting.clear()


def hash_token(token: str) -> str:
    """The stored form of a token (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated session as seen by a request or a WS connection."""

    id: int
    account_id: int
    username: str
    is_admin: bool
    created_at: float
    last_seen_at: float
    expires_at: float
    character_id: int | None
    peer_info: dict[str, Any] | None
    token_hash: str = field(repr=False)
    """The stored hash of the session's token: what binds state the session may resume
    (a presence in its reconnect grace) to this session rather than to its row id."""

    def describe(self) -> str:
        """``session=<id> account=<id>`` for log lines (never the token)."""
        return f"session={self.id} account={self.account_id}"


class SessionStore:
    """Create, resolve, slide, revoke and clean up sessions."""

    def __init__(
        self,
        db: Database,
        settings: LobbySettings,
        clock: Clock,
        *,
        cache_max: int = _CACHE_MAX,
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._recheck = min(settings.session_touch_interval, RECHECK_INTERVAL)
        self._cache_max = cache_max
        # token hash -> (session, when its row was read); session id -> token hash
        self._cache: dict[str, tuple[Session, float]] = {}
        self._hash_of: dict[int, str] = {}
        self._generation = 0
        """Bumped by every invalidation: a read that raced one is not cached."""
        self._rows = _Batches[str, Any](self._read_rows, "lobby-session-reads")
        """Token hash -> its session row (None: no such row), read in batches."""
        self._slides = _Batches[int, tuple[float, float] | None](
            self._slide_rows, "lobby-session-slides"
        )
        """Session id -> (last seen, expires) after sliding it (None: no such row), in batches."""

    async def create(self, account: Account) -> tuple[str, Session]:
        """A new session for ``account``: ``(token, session)``; the token is shown once."""
        token = secrets.token_urlsafe(32)
        token_hash = hash_token(token)
        now = self._clock()
        expires = now + self._settings.session_ttl
        async with self._db.write() as conn:
            result = await conn.execute(
                insert(sessions).values(
                    token_hash=token_hash,
                    account_id=account.id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=expires,
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None  # noqa: S101 - an insert always has one
        session = Session(
            id=int(pk[0]),
            account_id=account.id,
            username=account.username,
            is_admin=account.is_admin,
            created_at=now,
            last_seen_at=now,
            expires_at=expires,
            character_id=None,
            peer_info=None,
            token_hash=token_hash,
        )
        log.info("login %s", session.describe())
        return token, session

    async def authenticate(self, token: str | None) -> Session:
        """Resolve a token and slide its expiry; raise UNAUTHORIZED or SESSION_EXPIRED."""
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            raise LobbyError("a session token is required", code=ErrorCode.UNAUTHORIZED)
        key = hash_token(token)
        hit = self._cache.get(key)
        if hit is not None:
            session, checked = hit
            now = self._clock()
            if (
                checked <= now
                and now - checked < self._recheck
                and now - session.last_seen_at < self._settings.session_touch_interval
                and now < session.expires_at
            ):
                return session
            self._drop(session.id)
        generation = self._generation
        row = await self._rows.get(key)
        if row is None:
            raise LobbyError("invalid or revoked session token", code=ErrorCode.UNAUTHORIZED)
        session = self._from_row(row)
        now = self._clock()
        if now >= session.expires_at:
            await self.revoke(session.id)
            raise LobbyError("the session has expired", code=ErrorCode.SESSION_EXPIRED)
        if now - session.last_seen_at >= self._settings.session_touch_interval:
            slid = await self._slides.get(session.id)
            if slid is None:
                self._forget(session.id)
                raise LobbyError("invalid or revoked session token", code=ErrorCode.UNAUTHORIZED)
            session = replace(session, last_seen_at=slid[0], expires_at=slid[1])
        if generation == self._generation:
            self._remember(key, session, now)
        return session

    async def get(self, session_id: int) -> Session | None:
        """The session with ``session_id`` if it exists and has not expired (no sliding).

        Answered from the cache when it holds the session and read its row less than
        the recheck interval ago (the same freshness :meth:`authenticate` accepts).
        """
        key = self._hash_of.get(session_id)
        if key is not None:
            session, checked = self._cache[key]
            now = self._clock()
            if checked <= now and now - checked < self._recheck and now < session.expires_at:
                return session
        query = (
            select(sessions, accounts.c.username)
            .join(accounts, accounts.c.id == sessions.c.account_id)
            .where(sessions.c.id == session_id)
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        session = self._from_row(row._mapping)
        return session if self._clock() < session.expires_at else None

    async def touch(self, session: Session) -> Session:
        """Slide the expiry of ``session`` (written at most every touch interval)."""
        now = self._clock()
        if now - session.last_seen_at < self._settings.session_touch_interval:
            return session
        expires = now + self._settings.session_ttl
        async with self._db.write() as conn:
            result = await conn.execute(
                update(sessions)
                .where(sessions.c.id == session.id)
                .values(last_seen_at=now, expires_at=expires)
            )
        if result.rowcount == 0:
            self._forget(session.id)
            raise LobbyError("invalid or revoked session token", code=ErrorCode.UNAUTHORIZED)
        key = self._hash_of.get(session.id)
        if key is not None:  # slide the cached copy too (its other fields may be newer)
            cached, checked = self._cache[key]
            self._cache[key] = (replace(cached, last_seen_at=now, expires_at=expires), checked)
        return replace(session, last_seen_at=now, expires_at=expires)

    async def select_character(
        self, session: Session, character_id: int | None, peer_info: dict[str, Any] | None
    ) -> Session:
        """Record the selected character (and peer info) of ``session``.

        A character is selected by at most one session: any other session that had
        it selected loses the selection (the newest selection wins).
        """
        async with self._db.write() as conn:
            if character_id is not None:
                await conn.execute(
                    update(sessions)
                    .where(sessions.c.character_id == character_id, sessions.c.id != session.id)
                    .values(character_id=None, peer_info=None)
                )
            await conn.execute(
                update(sessions)
                .where(sessions.c.id == session.id)
                .values(
                    character_id=character_id,
                    peer_info=json.dumps(peer_info) if peer_info is not None else None,
                )
            )
        # after the write: a read that raced it is not cached either (generation)
        self._forget(session.id)
        if character_id is not None:
            self._forget_character(character_id)
        return replace(session, character_id=character_id, peer_info=peer_info)

    async def revoke(self, session_id: int) -> bool:
        """Delete a session (logout); True if it existed."""
        self._forget(session_id)
        async with self._db.write() as conn:
            result = await conn.execute(delete(sessions).where(sessions.c.id == session_id))
        self._forget(session_id)
        return bool(result.rowcount)

    async def cleanup(self) -> int:
        """Delete expired sessions; return how many."""
        now = self._clock()
        async with self._db.write() as conn:
            result = await conn.execute(delete(sessions).where(sessions.c.expires_at <= now))
        count = int(result.rowcount or 0)
        for session, _checked in list(self._cache.values()):
            if session.expires_at <= now:
                self._forget(session.id)
        if count:
            log.info("removed %d expired sessions", count)
        return count

    async def sessions_selecting(self, character_id: int) -> list[int]:
        """Ids of the sessions that selected ``character_id``."""
        async with self._db.read() as conn:
            rows = await conn.execute(
                select(sessions.c.id).where(sessions.c.character_id == character_id)
            )
            return [int(r) for r in rows.scalars()]

    def character_deleted(self, character_id: int) -> None:
        """``character_id`` is gone (its sessions were unselected in the database)."""
        self._forget_character(character_id)

    async def _read_rows(self, keys: list[str]) -> dict[str, Any]:
        query = (
            select(sessions, accounts.c.username)
            .join(accounts, accounts.c.id == sessions.c.account_id)
            .where(sessions.c.token_hash.in_(keys))
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        found = {str(row.token_hash): row._mapping for row in rows}
        return {key: found.get(key) for key in keys}

    async def _slide_rows(self, ids: list[int]) -> dict[int, tuple[float, float] | None]:
        now = self._clock()
        expires = now + self._settings.session_ttl
        async with self._db.write() as conn:
            result = await conn.execute(
                update(sessions)
                .where(sessions.c.id.in_(ids))
                .values(last_seen_at=now, expires_at=expires)
                .returning(sessions.c.id)
            )
            slid = {int(i) for i in result.scalars()}
        return {i: (now, expires) if i in slid else None for i in ids}

    @property
    def cached(self) -> int:
        """How many sessions the in-memory cache holds."""
        return len(self._cache)

    def _remember(self, key: str, session: Session, checked: float) -> None:
        self._drop(session.id)
        self._cache[key] = (session, checked)
        self._hash_of[session.id] = key
        while len(self._cache) > self._cache_max:
            self._drop(self._cache[next(iter(self._cache))][0].id)

    def _forget(self, session_id: int) -> None:
        """Invalidate ``session_id``: drop it, and keep racing reads from caching it."""
        self._generation += 1
        self._drop(session_id)

    def _drop(self, session_id: int) -> None:
        key = self._hash_of.pop(session_id, None)
        if key is not None:
            self._cache.pop(key, None)

    def _forget_character(self, character_id: int) -> None:
        for session, _checked in list(self._cache.values()):
            if session.character_id == character_id:
                self._forget(session.id)

    def _from_row(self, row: Any) -> Session:
        peer_info = row["peer_info"]
        return Session(
            id=int(row["id"]),
            account_id=int(row["account_id"]),
            username=str(row["username"]),
            is_admin=self._settings.is_admin(str(row["username"])),
            created_at=float(row["created_at"]),
            last_seen_at=float(row["last_seen_at"]),
            expires_at=float(row["expires_at"]),
            character_id=None if row["character_id"] is None else int(row["character_id"]),
            peer_info=json.loads(peer_info) if peer_info else None,
            token_hash=str(row["token_hash"]),
        )
