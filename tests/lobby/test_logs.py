"""Logs: ids on every line of a request, one access line per request, JSON or text, no token."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lobby import MasterServer
from lobby.logs import IdsFilter
from protocol.logformat import JsonFormatter, TextFormatter
from tests.lobby.lobby_process import lobby_process
from tests.lobby.support import ApiClient, fast_settings, signed_up, ws_url


@contextmanager
def captured(formatter: logging.Formatter) -> Iterator[io.StringIO]:
    """Lines of the ``lobby`` loggers at INFO through ``formatter`` (as ``configure`` sets up)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(IdsFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger("lobby")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[MasterServer]:
    async with MasterServer(settings=fast_settings(tmp_path / "lobby")) as lobby:
        yield lobby


async def test_json_lines_carry_ids_and_one_access_line_per_request(
    server: MasterServer,
) -> None:
    with captured(JsonFormatter()) as out:
        async with aiohttp.ClientSession() as http:
            client = ApiClient(server.url, http)
            account = (await client.register("alice"))["account_id"]
            token = await client.login("alice")
            status, _, resp = await client.call(
                "GET", "/api/characters", headers={"X-Request-Id": "trace-42"}
            )
            assert status == 200 and resp.headers["X-Request-Id"] == "trace-42"
            status, _, resp = await client.call("DELETE", "/api/characters/12345")
            assert status == 404 and re.fullmatch(r"[0-9a-f]{16}", resp.headers["X-Request-Id"])
            async with http.ws_connect(f"{ws_url(server.url)}?token={token}") as ws:
                await ws.send_str(json.dumps({"type": "heartbeat", "sent_at": 1.0}))
                await ws.receive()
            await client.call("POST", "/api/auth/logout")
            async with http.get(server.url + "/nothing/here?token=" + token) as resp:
                assert resp.status == 404
            async with http.get(server.url + "/admin/", allow_redirects=False) as resp:
                assert resp.status == 308
        await server.stop()
    text = out.getvalue()
    assert token not in text
    lines = [json.loads(line) for line in text.splitlines()]
    access = [x for x in lines if x["logger"] == "lobby.access"]
    assert [(x["method"], x["route"], x["status"]) for x in access] == [
        ("POST", "/api/auth/register", 201),
        ("POST", "/api/auth/login", 200),
        ("GET", "/api/characters", 200),
        ("DELETE", "/api/characters/{character_id}", 404),
        ("GET", "/ws", 101),
        ("POST", "/api/auth/logout", 200),
        ("GET", "(unmatched)", 404),
        ("GET", "/admin/", 308),
    ]
    assert all(isinstance(x["ms"], float) and x["ms"] >= 0 for x in access)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", x["time"]) for x in lines)
    accounts = [x.get("account_id") for x in access]
    assert accounts == [None, None, account, account, account, account, None, None]
    assert access[2]["request_id"] == "trace-42"
    assert len({x["request_id"] for x in access}) == len(access)
    ws_line = access[4]
    assert ws_line["conn_id"] >= 1 and ws_line["session_id"] >= 1
    # a line logged while serving a request carries that request's ids
    logout = next(x for x in lines if x["message"].startswith("logout "))
    assert logout["request_id"] == access[5]["request_id"]
    assert (logout["session_id"], logout["account_id"]) == (access[5]["session_id"], account)
    # lines outside any request have no ids
    stopped = next(x for x in lines if x["message"] == "lobby stopped")
    assert "request_id" not in stopped and "session_id" not in stopped


async def test_text_lines_append_the_ids(server: MasterServer) -> None:
    with captured(TextFormatter()) as out:
        async with aiohttp.ClientSession() as http:
            client = await signed_up(server.url, http, "bob")
            await client.call("GET", "/api/characters", headers={"X-Request-Id": "abc"})
            await client.call("GET", "/api/status", headers={"X-Request-Id": "bad id!"})
    lines = out.getvalue().splitlines()
    line = next(x for x in lines if "GET /api/characters 200" in x)
    assert re.search(
        r" INFO lobby\.access: GET /api/characters 200 [\d.]+ms account=1 "
        r"\[request=abc session=1 account=1\]$",
        line,
    ), line
    status = next(x for x in lines if "GET /api/status 200" in x)
    assert re.search(r"account=- \[request=[0-9a-f]{16}\]$", status), status  # not "bad id!"


async def test_python_m_lobby_log_format_json(tmp_path: Path) -> None:
    log = tmp_path / "lobby.log"
    async with lobby_process(tmp_path / "data", "--log-format", "json", log=log) as lobby:
        async with aiohttp.ClientSession() as http:
            async with http.get(lobby.url + "/api/status") as resp:
                assert resp.status == 200
        assert await lobby.stop() == 0
    err = await asyncio.to_thread(log.read_bytes)
    records: list[dict[str, Any]] = [json.loads(x) for x in err.decode().splitlines()]
    assert any(r["message"].startswith("lobby started: ") for r in records)
    status = [r for r in records if r["logger"] == "lobby.access"]
    assert [(r["route"], r["status"]) for r in status] == [("/api/status", 200)]
