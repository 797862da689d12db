"""``python -m lobby --turn-url ... --turn-secret ...``: the lobby issues TURN credentials."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from protocol.turn import verify_turn_rest_credentials
from tests.lobby.lobby_process import lobby_process, start_lobby
from tests.lobby.support import ApiClient

SECRET = "cli-turn-secret"  # noqa: S105 - a test secret


async def test_turn_flags_reach_the_credentials_endpoint(tmp_path: Path) -> None:
    log = tmp_path / "lobby.log"
    flags = (
        "--turn-url",
        "turn:turn.example:3478?transport=udp",
        "--turn-url",
        "turn:turn.example:3478?transport=tcp,turns:turn.example:5349",
        "--turn-secret",
        SECRET,
    )
    async with lobby_process(tmp_path / "data", *flags, log=log) as lobby:
        async with aiohttp.ClientSession() as http:
            client = ApiClient(lobby.url, http)
            await client.register("turnuser")
            await client.login("turnuser")
            hero = await client.create_character("Turnhero", "Crimson Covenant", "Warrior")
            await client.select(int(hero["id"]))
            status, ice, _ = await client.call("GET", "/api/turn/credentials")
        assert status == 200, ice
        assert ice["turn_urls"] == [
            "turn:turn.example:3478?transport=udp",
            "turn:turn.example:3478?transport=tcp",
            "turns:turn.example:5349",
        ]
        assert ice["username"].endswith(f":{hero['id']}")
        assert SECRET not in str(ice)
        now = int(ice["username"].partition(":")[0]) - ice["ttl"]
        verify_turn_rest_credentials(SECRET, ice["username"], ice["password"], now=now)
        assert await lobby.stop() == 0
    assert SECRET not in log.read_text()  # never logged


async def test_a_turn_url_without_a_secret_is_refused_at_start(tmp_path: Path) -> None:
    flags = ("--turn-url", "turn:turn.example:3478")
    with pytest.raises(AssertionError, match="turn_secret"):
        await start_lobby(tmp_path / "data", *flags, log=tmp_path / "lobby.log")
