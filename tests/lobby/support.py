"""Test support for the lobby: a fake clock, fast settings and a small REST client."""

from __future__ import annotations

import asyncio
import base64
import json as _json
import os
import socket
import textwrap
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from lobby import LobbySettings

__all__ = [
    "FAST_HASH",
    "ApiClient",
    "PASSWORD",
    "FakeClock",
    "Inbox",
    "aiohttp_inbox",
    "branch_revision",
    "close_code",
    "fast_settings",
    "frame_messages",
    "signed_up",
    "websockets_inbox",
    "ws_url",
]

PASSWORD = "correct horse"

FAST_HASH: dict[str, Any] = {
    "argon2_time_cost": 1,
    "argon2_memory_cost": 1024,
    "argon2_parallelism": 1,
    "hash_pool": "thread",
}
"""Cheap argon2 parameters, hashed in threads: tests only (one test uses the production
defaults; the tests of the worker processes ask for ``hash_pool="process"``)."""


class FakeClock:
    """A wall clock that moves only when told to."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fast_settings(data_dir: Path, **overrides: Any) -> LobbySettings:
    """Settings for a test lobby: port 0, cheap hashing, REST limits out of the way."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": data_dir,
        "rest_burst_per_address": 10_000,
        "rest_rate_per_address": 10_000,
        "rest_burst_per_account": 10_000,
        "rest_rate_per_account": 10_000,
        "ws_close_timeout": 2.0,
        "maintenance_interval": 3600.0,
        **FAST_HASH,
    }
    values.update(overrides)
    return LobbySettings(**values)


class ApiClient:
    """A thin REST client over one aiohttp session (raises nothing on 4xx: returns status)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base = base_url
        self.http = session
        self.token: str | None = None

    def headers(self, token: str | None = None) -> dict[str, str]:
        tok = token if token is not None else self.token
        return {"Authorization": f"Bearer {tok}"} if tok else {}

    async def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        token: str | None = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        hdrs = {**self.headers(token), **(headers or {})}
        async with self.http.request(
            method, self.base + path, json=json, data=data, headers=hdrs
        ) as resp:
            body = await resp.json(content_type=None)
            return resp.status, body, resp

    async def register(self, username: str, password: str = PASSWORD) -> Any:
        status, body, _ = await self.call(
            "POST", "/api/auth/register", {"username": username, "password": password}
        )
        assert status == 201, body
        return body

    async def login(self, username: str, password: str = PASSWORD) -> str:
        status, body, _ = await self.call(
            "POST", "/api/auth/login", {"username": username, "password": password}
        )
        assert status == 200, body
        self.token = body["token"]
        return str(body["token"])

    async def create_character(
        self, name: str, faction: str, character_class: str
    ) -> dict[str, Any]:
        status, body, _ = await self.call(
            "POST",
            "/api/characters",
            {"name": name, "faction": faction, "character_class": character_class},
        )
        assert status == 201, body
        return dict(body)

    async def sign_up(self, username: str, password: str = PASSWORD) -> str:
        """Register ``username`` and log in: the session token (also kept for later calls)."""
        await self.register(username, password)
        return await self.login(username, password)

    async def play(
        self,
        username: str,
        faction: str = "Crimson Covenant",
        character_class: str = "Warrior",
        character_name: str | None = None,
    ) -> dict[str, Any]:
        """Register ``username``, log in, create a character (``<username>Hero`` unless
        named) and select it: what a player does before joining the world. The character."""
        await self.sign_up(username)
        character = await self.create_character(
            character_name or f"{username}Hero", faction, character_class
        )
        await self.select(int(character["id"]))
        return character

    async def select(self, character_id: int, **extra: Any) -> dict[str, Any]:
        status, body, _ = await self.call(
            "POST", "/api/characters/select", {"character_id": character_id, **extra}
        )
        assert status == 200, body
        return dict(body)


async def signed_up(base_url: str, http: aiohttp.ClientSession, username: str) -> ApiClient:
    """A client of the lobby at ``base_url`` for a new account ``username``, logged in."""
    client = ApiClient(base_url, http)
    await client.sign_up(username)
    return client


def branch_revision(revision: str, branch: str, upgrade: str, downgrade: str = "pass") -> str:
    """The source of an Alembic revision that starts the branch ``branch`` on the baseline
    (``0001``), as a service or a test adds one: ``upgrade`` and ``downgrade`` are the
    bodies of its two functions."""
    upgrade_body = textwrap.indent(textwrap.dedent(upgrade).strip(), "    ")
    return (
        "from alembic import op\n"
        "import sqlalchemy as sa\n\n"
        f'revision = "{revision}"\n'
        "down_revision = None\n"
        f'branch_labels = ("{branch}",)\n'
        'depends_on = "0001"\n\n\n'
        f"def upgrade() -> None:\n{upgrade_body}\n\n\n"
        f"def downgrade() -> None:\n    {downgrade}\n"
    )


def frame_messages(text: str) -> list[dict[str, Any]]:
    """A server frame holds one message object or a JSON array of them (a batch)."""
    data = _json.loads(text)
    return list(data) if isinstance(data, list) else [data]


class Inbox:
    """Messages from one WebSocket, unbatched, with a wait-for-matching-message helper."""

    def __init__(self, recv: Callable[[], Awaitable[str | None]]) -> None:
        self._recv = recv
        self._pending: deque[dict[str, Any]] = deque()
        self.seen: list[dict[str, Any]] = []
        self.closed = False

    async def next(
        self,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        wait: float = 10.0,
    ) -> dict[str, Any]:
        """The next message matching ``predicate`` (others are kept in ``seen``)."""

        async def find() -> dict[str, Any]:
            while True:
                while self._pending:
                    msg = self._pending.popleft()
                    self.seen.append(msg)
                    if predicate is None or predicate(msg):
                        return msg
                text = await self._recv()
                if text is None:
                    self.closed = True
                    raise ConnectionError("the socket closed")
                self._pending.extend(frame_messages(text))

        return await asyncio.wait_for(find(), wait)

    async def next_type(self, msg_type: str, *, wait: float = 10.0) -> dict[str, Any]:
        return await self.next(lambda m: m.get("type") == msg_type, wait=wait)


def aiohttp_inbox(ws: aiohttp.ClientWebSocketResponse) -> Inbox:
    async def recv() -> str | None:
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            return str(msg.data)
        return None

    return Inbox(recv)


async def close_code(ws: aiohttp.ClientWebSocketResponse, *, wait: float = 10.0) -> int | None:
    """Read past the text frames still on their way until the lobby closes ``ws``; the
    close code (fails if anything but text or a close frame comes first)."""
    msg = await ws.receive(timeout=wait)
    while msg.type == aiohttp.WSMsgType.TEXT:
        msg = await ws.receive(timeout=wait)
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    return msg.data if isinstance(msg.data, int) else None


def websockets_inbox(ws: Any) -> Inbox:
    import websockets

    async def recv() -> str | None:
        try:
            data = await ws.recv()
        except websockets.ConnectionClosed:
            return None
        return data if isinstance(data, str) else data.decode()

    return Inbox(recv)


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://", 1) + "/ws"


async def raw_ws(port: int, token: str) -> socket.socket:
    """A raw WebSocket client with a tiny receive buffer that reads only when the test does.

    Returns the non-blocking socket right after the 101 upgrade, so a test can stall
    its reads (slow consumer) or parse frames itself.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await loop.sock_recv(sock, 1)
        assert chunk, "server closed during the upgrade"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock
