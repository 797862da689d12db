"""Token checks that arrive together share database reads, and each still gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import delete, event, select, update

from lobby import MasterServer
from lobby.sessions import LOOKUP_BATCH, Session, hash_token
from lobby.storage import sessions
from protocol.errors import ErrorCode, LobbyError
from tests.lobby.support import ApiClient, FakeClock


@contextmanager
def session_reads(server: MasterServer, verb: str = "SELECT") -> Iterator[list[str]]:
    """The statements on the sessions table starting with ``verb`` run inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        text = " ".join(statement.split()).upper()
        if text.startswith(verb) and " SESSIONS " in f"{text} ":
            seen.append(text)

    engine = server.ctx.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def _tokens(make_client: Callable[[], ApiClient], name: str, count: int) -> list[str]:
    client = make_client()
    await client.register(name)
    return [await client.login(name) for _ in range(count)]


async def _check(server: MasterServer, token: str) -> Session | LobbyError:
    try:
        return await server.ctx.sessions.authenticate(token)
    except LobbyError as exc:
        return exc


async def test_a_burst_of_token_checks_is_one_read_and_each_answer_is_its_own(
    lobby: MasterServer, make_client: Callable[[], ApiClient]
) -> None:
    store = lobby.ctx.sessions
    tokens = await _tokens(make_client, "burst", 10)
    revoked, expired, live = tokens[0], tokens[1], tokens[2:]
    revoked_id = (await store.authenticate(revoked)).id
    await store.revoke(revoked_id)
    async with lobby.ctx.db.write() as db:  # expired behind the lobby's back (no cache entry)
        await db.execute(
            update(sessions)
            .where(sessions.c.token_hash == hash_token(expired))
            .values(expires_at=0.0)
        )
    burst = [*live, live[0], revoked, expired, "not-a-token"]
    with session_reads(lobby) as reads:
        answers = await asyncio.gather(*(_check(lobby, t) for t in burst))
    assert len(reads) == 1  # one SELECT ... IN (...) for the whole burst
    *good, again, gone, old, bogus = answers
    for token, answer in zip(live, good, strict=True):
        assert isinstance(answer, Session) and answer.token_hash == hash_token(token)
    assert len({a.id for a in good if isinstance(a, Session)}) == len(live)
    assert isinstance(again, Session) and again == good[0]
    assert isinstance(gone, LobbyError) and gone.code == ErrorCode.UNAUTHORIZED
    assert isinstance(old, LobbyError) and old.code == ErrorCode.SESSION_EXPIRED
    assert isinstance(bogus, LobbyError) and bogus.code == ErrorCode.UNAUTHORIZED
    # the expired session was deleted on the way: it stays refused
    assert isinstance(await _check(lobby, expired), LobbyError)


async def test_a_burst_larger_than_a_batch_is_read_in_batches(
    lobby: MasterServer, monkeypatch: pytest.MonkeyPatch, make_client: Callable[[], ApiClient]
) -> None:
    assert LOOKUP_BATCH > 3
    monkeypatch.setattr("lobby.sessions.LOOKUP_BATCH", 3)
    tokens = await _tokens(make_client, "batches", 7)
    with session_reads(lobby) as reads:
        answers = await asyncio.gather(*(_check(lobby, t) for t in tokens))
    assert all(isinstance(a, Session) for a in answers)
    assert len(reads) == 3  # 3 + 3 + 1


async def test_a_failed_read_reaches_every_waiter_and_the_next_burst_reads_again(
    lobby: MasterServer, monkeypatch: pytest.MonkeyPatch, make_client: Callable[[], ApiClient]
) -> None:
    store = lobby.ctx.sessions
    tokens = await _tokens(make_client, "readfail", 4)
    real = store._read_rows
    failures = [OSError("database went away")]

    async def flaky(keys: list[str]) -> dict[str, Any]:
        if failures:
            raise failures.pop()
        return await real(keys)

    monkeypatch.setattr(store._rows, "_fetch", flaky)  # injects one fault
    first = await asyncio.gather(*(store.authenticate(t) for t in tokens), return_exceptions=True)
    assert all(isinstance(a, OSError) for a in first)
    second = await asyncio.gather(*(store.authenticate(t) for t in tokens))
    assert [s.token_hash for s in second] == [hash_token(t) for t in tokens]


async def test_get_answers_from_a_fresh_cache_entry_and_rereads_after_a_change(
    lobby: MasterServer, make_client: Callable[[], ApiClient], clock: FakeClock
) -> None:
    store = lobby.ctx.sessions
    (token,) = await _tokens(make_client, "cachedget", 1)
    session = await store.authenticate(token)
    with session_reads(lobby) as reads:
        assert await store.get(session.id) == session
    assert reads == []
    await store.select_character(session, None, {"ticket": "t"})  # drops the cache entry
    with session_reads(lobby) as reads:
        fresh = await store.get(session.id)
    assert len(reads) == 1 and fresh is not None and fresh.peer_info == {"ticket": "t"}
    clock.advance(lobby.settings.session_ttl)  # expired: never answered from the cache
    assert await store.get(session.id) is None


async def test_sessions_due_a_slide_are_slid_by_one_update(
    lobby: MasterServer, make_client: Callable[[], ApiClient], clock: FakeClock
) -> None:
    store = lobby.ctx.sessions
    tokens = await _tokens(make_client, "slides", 6)
    clock.advance(lobby.settings.session_touch_interval + 1)  # every one is due a slide
    with session_reads(lobby, "UPDATE") as writes:
        answers = await asyncio.gather(*(store.authenticate(t) for t in tokens))
    assert len(writes) == 1
    expires = clock() + lobby.settings.session_ttl
    assert all(a.last_seen_at == clock() and a.expires_at == expires for a in answers)
    async with lobby.ctx.db.read() as db:
        rows = (await db.execute(select(sessions.c.expires_at))).scalars().all()
    assert sorted(rows) == [expires] * len(tokens)


async def test_a_session_deleted_before_its_slide_is_refused(
    lobby: MasterServer,
    monkeypatch: pytest.MonkeyPatch,
    make_client: Callable[[], ApiClient],
    clock: FakeClock,
) -> None:
    store = lobby.ctx.sessions
    keep, lose = await _tokens(make_client, "slidegone", 2)
    clock.advance(lobby.settings.session_touch_interval + 1)
    real = store._slide_rows

    async def revoked_meanwhile(ids: list[int]) -> dict[int, tuple[float, float] | None]:
        # another lobby process logs ``lose`` out between the read and the slide
        async with lobby.ctx.db.write() as db:
            await db.execute(delete(sessions).where(sessions.c.token_hash == hash_token(lose)))
        return await real(ids)

    monkeypatch.setattr(store._slides, "_fetch", revoked_meanwhile)  # injects the race
    kept, lost = await asyncio.gather(*(_check(lobby, t) for t in (keep, lose)))
    assert isinstance(kept, Session)
    assert isinstance(lost, LobbyError) and lost.code == ErrorCode.UNAUTHORIZED
    assert isinstance(await _check(lobby, lose), LobbyError)


async def test_while_checks_keep_coming_the_next_read_waits_for_more_to_join(
    lobby: MasterServer, monkeypatch: pytest.MonkeyPatch, make_client: Callable[[], ApiClient]
) -> None:
    """A storm: checks arrive while a read runs and again just after it. The next read
    lingers (``BACKLOG_LINGER``) so both waves go in one read instead of one read each."""
    store = lobby.ctx.sessions
    first, *during, after1, after2 = await _tokens(make_client, "linger", 5)
    real = store._read_rows
    loop = asyncio.get_running_loop()
    later: list[asyncio.Future[Session | LobbyError]] = []
    second_wave = asyncio.Event()

    def arrive_after() -> None:
        later.extend(asyncio.ensure_future(_check(lobby, t)) for t in (after1, after2))
        second_wave.set()

    async def arrivals_around(keys: list[str]) -> dict[str, Any]:
        if not later:  # the first read: one wave arrives while it runs, one right after
            later.extend(asyncio.ensure_future(_check(lobby, t)) for t in during)
            await asyncio.sleep(0)  # the wave's checks are queued behind this read
            found = await real(keys)
            loop.call_soon(arrive_after)  # the next turn: once this read has answered
            return found
        return await real(keys)

    monkeypatch.setattr(store._rows, "_fetch", arrivals_around)  # injects the arrival times
    with session_reads(lobby) as reads:
        answer = await _check(lobby, first)
        await asyncio.wait_for(second_wave.wait(), 10)
        answers = await asyncio.wait_for(asyncio.gather(*later), 10)
    assert isinstance(answer, Session)
    assert all(isinstance(a, Session) for a in answers)
    assert len(reads) == 2  # the first read, then both waves together
