"""A lobby restarted on the same data directory keeps accounts, characters and sessions."""

from __future__ import annotations

import stat
from pathlib import Path

import aiohttp

from lobby import MasterServer
from lobby.keys import KEY_FILE_NAME
from tests.lobby.support import ApiClient, FakeClock, fast_settings


async def test_restart_keeps_accounts_characters_and_unexpired_sessions(
    tmp_path: Path, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    data = tmp_path / "data"
    async with MasterServer(settings=fast_settings(data), clock=clock) as first:
        client = ApiClient(first.url, http)
        token = await client.sign_up("alice")
        hero = await client.create_character("Aria", "Verdant Pact", "Cleric")
        await client.select(hero["id"])
        old = ApiClient(first.url, http)
        await old.login("alice")
        status, old_status, _ = await client.call("GET", "/api/status")
        key_before = old_status["lobby_public_key"]
    clock.advance(1000)  # old's session was last used 1000 s ago: still alive
    settings = fast_settings(data)
    async with MasterServer(settings=settings, clock=clock) as second:
        client.base = old.base = second.url
        status, listed, _ = await client.call("GET", "/api/characters", token=token)
        assert status == 200
        assert [(c["name"], c["faction"]) for c in listed["characters"]] == [
            ("Aria", "Verdant Pact")
        ]
        status, _, _ = await old.call("GET", "/api/characters")
        assert status == 200
        # the password still works, the account is one
        await ApiClient(second.url, http).login("alice")
        status, err, _ = await client.call(
            "POST", "/api/auth/register", {"username": "ALICE", "password": "another pw"}
        )
        assert (status, err["code"]) == (409, "username_taken")
        # the signing key is the same one, kept private
        status, st, _ = await client.call("GET", "/api/status")
        assert st["lobby_public_key"] == key_before
        assert stat.S_IMODE((data / KEY_FILE_NAME).stat().st_mode) == 0o600
        # the selected character survived with the session: chat needs no re-select
        assert second.ctx.hub.players_online == 0
    clock.advance(settings.session_ttl + 1)
    async with MasterServer(settings=fast_settings(data), clock=clock) as third:
        client.base = third.url
        status, err, _ = await client.call("GET", "/api/characters", token=token)
        assert (status, err["code"]) == (401, "session_expired")
        await third.run_maintenance()
