"""End to end over REST against a real lobby and a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from lobby import MasterServer
from tests.lobby.support import ApiClient, FakeClock


async def test_register_login_characters_select_delete_logout(
    lobby: MasterServer, make_client: object, tmp_path: Path
) -> None:
    client: ApiClient = make_client()  # type: ignore[operator]
    assert (tmp_path / "lobby-data" / "lobby.sqlite3").exists()
    body = await client.register("Alice")
    assert body["username"] == "Alice"
    status, err, _ = await client.call(
        "POST", "/api/auth/register", {"username": "alice", "password": "whatever1"}
    )
    assert (status, err["code"]) == (409, "username_taken")

    token = await client.login("alice")
    status, chars, _ = await client.call("GET", "/api/characters")
    assert status == 200 and chars["characters"] == [] and chars["limit"] == 5

    hero = await client.create_character("Aria", "Crimson Covenant", "Mage")
    assert hero["location_id"] == 1 and hero["gold"] == 100 and hero["level"] == 1
    status, err, _ = await client.call(
        "POST",
        "/api/characters",
        {"name": "ARIA", "faction": "Crimson Covenant", "character_class": "Mage"},
    )
    assert (status, err["code"]) == (409, "name_taken")
    status, err, _ = await client.call(
        "POST",
        "/api/characters",
        {"name": "x!", "faction": "Crimson Covenant", "character_class": "Mage"},
    )
    assert (status, err["code"]) == (422, "invalid_name")
    status, err, _ = await client.call(
        "POST",
        "/api/characters",
        {"name": "Bobby", "faction": "Nope", "character_class": "Mage"},
    )
    assert (status, err["code"]) == (422, "validation_error")

    selected = await client.select(hero["id"])
    assert selected["character"]["name"] == "Aria" and selected["ticket"] is None

    status, listed, _ = await client.call("GET", "/api/characters")
    assert [c["name"] for c in listed["characters"]] == ["Aria"]

    status, deleted, _ = await client.call("DELETE", f"/api/characters/{hero['id']}")
    assert status == 200 and deleted["character_id"] == hero["id"]
    status, listed, _ = await client.call("GET", "/api/characters")
    assert listed["characters"] == []

    status, _, _ = await client.call("POST", "/api/auth/logout")
    assert status == 200
    status, err, _ = await client.call("GET", "/api/characters", token=token)
    assert (status, err["code"]) == (401, "unauthorized")


async def test_token_expires_by_clock_and_slides(
    lobby: MasterServer, make_client: object, clock: FakeClock
) -> None:
    client: ApiClient = make_client()  # type: ignore[operator]
    await client.sign_up("bob")
    clock.advance(3000)
    status, _, _ = await client.call("GET", "/api/characters")
    assert status == 200  # slides the expiry to now + 3600
    clock.advance(3000)
    status, _, _ = await client.call("GET", "/api/characters")
    assert status == 200
    clock.advance(3601)
    status, err, _ = await client.call("GET", "/api/characters")
    assert (status, err["code"]) == (401, "session_expired")
    status, err, _ = await client.call("GET", "/api/characters")
    assert (status, err["code"]) == (401, "unauthorized")
