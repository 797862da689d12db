"""The in-memory session cache never outlives a change: logout, selection, deletion, expiry."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete, select

from lobby import MasterServer
from lobby.sessions import RECHECK_INTERVAL, hash_token
from lobby.storage import sessions
from tests.lobby.support import ApiClient, FakeClock


async def _ready(make_client: Callable[[], ApiClient], name: str) -> tuple[ApiClient, int]:
    client = make_client()
    return client, int((await client.play(name))["id"])


async def test_logout_ends_a_cached_session_at_once(
    lobby: MasterServer, make_client: Callable[[], ApiClient]
) -> None:
    client, _ = await _ready(make_client, "cacheout")
    token = client.token
    assert (await client.call("GET", "/api/characters"))[0] == 200
    assert lobby.ctx.sessions.cached >= 1
    assert (await client.call("POST", "/api/auth/logout"))[0] == 200
    status, body, _ = await client.call("GET", "/api/characters", token=token)
    assert status == 401 and body["code"] == "unauthorized"


async def test_a_selection_elsewhere_reaches_the_cached_session(
    lobby: MasterServer, make_client: Callable[[], ApiClient]
) -> None:
    first, hero = await _ready(make_client, "cachesel")
    assert (await first.call("GET", "/api/inventory"))[0] == 200  # cached with the hero
    second = make_client()
    await second.login("cachesel")
    await second.select(hero)  # the newest selection wins
    status, body, _ = await first.call("GET", "/api/inventory")
    assert status == 403 and body["code"] == "no_character"
    assert (await second.call("GET", "/api/inventory"))[0] == 200


async def test_deleting_the_selected_character_unselects_the_cached_session(
    lobby: MasterServer, make_client: Callable[[], ApiClient]
) -> None:
    client, hero = await _ready(make_client, "cachedel")
    assert (await client.call("GET", "/api/inventory"))[0] == 200
    assert (await client.call("DELETE", f"/api/characters/{hero}"))[0] == 200
    status, body, _ = await client.call("GET", "/api/inventory")
    assert status == 403 and body["code"] == "no_character"


async def test_expiry_and_sliding_with_the_cache(
    lobby: MasterServer, make_client: Callable[[], ApiClient], clock: FakeClock
) -> None:
    settings = lobby.settings
    client, _ = await _ready(make_client, "cacheslide")
    assert client.token is not None
    key = hash_token(client.token)

    async def expires_in_db() -> float:
        async with lobby.ctx.db.read() as db:
            row = (await db.execute(select(sessions).where(sessions.c.token_hash == key))).one()
        return float(row.expires_at)

    before = await expires_in_db()
    clock.advance(settings.session_touch_interval)
    assert (await client.call("GET", "/api/characters"))[0] == 200
    assert await expires_in_db() == clock() + settings.session_ttl > before  # slid in the DB
    clock.advance(settings.session_ttl)
    status, body, _ = await client.call("GET", "/api/characters")
    assert status == 401 and body["code"] == "session_expired"


async def test_a_row_deleted_behind_the_cache_is_seen_within_the_recheck_interval(
    lobby: MasterServer, make_client: Callable[[], ApiClient], clock: FakeClock
) -> None:
    """Another lobby process sharing the database revokes: the cache notices in time."""
    client, _ = await _ready(make_client, "cacheremote")
    assert client.token is not None
    assert (await client.call("GET", "/api/characters"))[0] == 200
    async with lobby.ctx.db.write() as db:
        await db.execute(delete(sessions).where(sessions.c.token_hash == hash_token(client.token)))
    clock.advance(min(RECHECK_INTERVAL, lobby.settings.session_touch_interval))
    status, body, _ = await client.call("GET", "/api/characters")
    assert status == 401 and body["code"] == "unauthorized"
