"""Login abuse over HTTP: an attacker cannot keep an account's owner out, guessing stays
bounded per account per hour, and a guesser behind a NAT does not shut out the others.

Addresses come from ``X-Forwarded-For`` (the lobby trusts it here, as behind a proxy).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lobby import MasterServer
from tests.lobby.support import PASSWORD, ApiClient, FakeClock, fast_settings

OWNER_HOME = "198.51.100.2"
ATTACKER = "203.0.113.7"
PER_HOUR = 30


@pytest.fixture
async def server(tmp_path: Path, clock: FakeClock) -> AsyncIterator[MasterServer]:
    settings = fast_settings(
        tmp_path / "data",
        trust_forwarded_for=True,
        login_max_failures_per_account=5,
        login_failure_window=300.0,
        login_lockout=300.0,
        login_account_failures_per_hour=PER_HOUR,
        login_max_failures_per_address=50,
    )
    async with MasterServer(settings=settings, clock=clock) as lobby:
        yield lobby


class Client(ApiClient):
    """A client at one address."""

    def __init__(self, base_url: str, http: aiohttp.ClientSession, address: str) -> None:
        super().__init__(base_url, http)
        self.address = address

    async def attempt(
        self, username: str, password: str = PASSWORD
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        return await self.call(
            "POST",
            "/api/auth/login",
            {"username": username, "password": password},
            headers={"X-Forwarded-For": self.address},
        )

    async def sign_up(self, username: str) -> None:
        status, body, _ = await self.call(
            "POST",
            "/api/auth/register",
            {"username": username, "password": PASSWORD},
            headers={"X-Forwarded-For": self.address},
        )
        assert status == 201, body


def at(server: MasterServer, http: aiohttp.ClientSession, address: str) -> Client:
    return Client(server.url, http, address)


async def test_an_attacker_cannot_keep_the_owner_out(
    server: MasterServer, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    owner, attacker = at(server, http, OWNER_HOME), at(server, http, ATTACKER)
    await owner.sign_up("victim")
    await at(server, http, "192.0.2.9").sign_up("neighbour")

    for _ in range(5):
        status, body, _ = await attacker.attempt("victim", "guess guess")
        assert (status, body["code"]) == (401, "invalid_credentials")
    # the attacker's address is locked out of this account, even with the right password
    status, body, resp = await attacker.attempt("victim")
    assert (status, body["code"]) == (429, "account_locked")
    assert body["details"]["reason"] == "address_locked"
    assert 1 <= int(resp.headers["Retry-After"]) <= 300
    # ... and nobody else is: the owner, and another player behind the attacker's NAT
    status, body, _ = await owner.attempt("victim")
    assert status == 200, body
    status, body, _ = await attacker.attempt("neighbour")
    assert status == 200, body

    # five tries every five minutes, for three hours: the owner always gets in
    wrong = 0
    for _ in range(36):
        clock.advance(300)
        for _ in range(5):
            status, body, resp = await attacker.attempt("victim", "guess guess")
            if status == 429:
                assert body["code"] == "account_locked" and "Retry-After" in resp.headers
            else:
                assert status == 401
                wrong += 1
        status, body, _ = await owner.attempt("victim")
        assert status == 200, body
    assert wrong <= 3 * PER_HOUR


async def test_guessing_is_bounded_per_account_per_hour(
    server: MasterServer, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A guess every 10 s for 50 minutes, each from a fresh address: at most the hourly
    budget of them reaches a password check; the rest wait, told for how long."""
    owner = at(server, http, OWNER_HOME)
    await owner.sign_up("victim")
    checked = 0
    refused: list[int] = []
    for i in range(300):
        status, body, resp = await at(server, http, f"10.0.{i // 250}.{i % 250}").attempt(
            "victim", f"guess {i}"
        )
        if status == 401:
            checked += 1
        else:
            assert (status, body["code"], body["details"]["reason"]) == (
                429,
                "account_locked",
                "account_throttled",
            )
            refused.append(int(resp.headers["Retry-After"]))
        clock.advance(10)
    assert checked == PER_HOUR
    assert refused and all(1 <= r <= 3600 for r in refused)
    # a stranger's address waits too, but the owner's known address gets in
    status, _, _ = await at(server, http, "192.0.2.77").attempt("victim")
    assert status == 429
    status, body, _ = await owner.attempt("victim")
    assert status == 200, body
