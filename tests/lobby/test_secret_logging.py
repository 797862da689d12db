"""At DEBUG level the lobby logs no secret: no bound SQL parameter (argon2 hashes, token
hashes), no token, not even with SQLAlchemy's own SQL log turned on."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from lobby import MasterServer
from lobby.sessions import hash_token
from lobby.storage import accounts, sessions
from tests.lobby.support import PASSWORD, ApiClient, FakeClock, fast_settings


async def test_debug_logs_hold_no_password_or_token_hash(
    tmp_path: Path,
    clock: FakeClock,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # what --log-level DEBUG does
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # an operator's SQL echo
    settings = fast_settings(tmp_path / "data", log_level="DEBUG")
    async with MasterServer(settings=settings, clock=clock) as server:
        client = ApiClient(server.url, http)
        token = await client.sign_up("alice")
        status, _, _ = await client.call(
            "POST", "/api/auth/login", {"username": "alice", "password": "wrong one"}
        )
        assert status == 401
        status, _, _ = await client.call("GET", "/api/characters")
        assert status == 200
        async with server.ctx.db.read() as db:
            password_hash = (await db.execute(select(accounts.c.password_hash))).scalar_one()
            token_hash = (await db.execute(select(sessions.c.token_hash))).scalar_one()
    assert token_hash == hash_token(token)

    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert "INSERT INTO accounts" in logged  # SQL is logged at this level ...
    assert "SQL parameters hidden" in logged  # ... without its parameters
    for secret in (password_hash, password_hash.split("$")[-1], token_hash, token, PASSWORD):
        assert secret not in logged
