"""The HTTP front door over real sockets: header deadline, idle timeout, refused upgrades,
the per-address connection cap, and one short rate-limited line per malformed request."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from lobby import MasterServer
from lobby.http.guard import LOG_BURST
from tests.lobby.support import FakeClock, fast_settings, raw_ws

LONG = 3600.0
WAIT = 20.0
"""Upper bound for events that take a fraction of a second (never a timing assertion)."""


@asynccontextmanager
async def serving(
    tmp_path: Path, clock: FakeClock | None = None, **overrides: Any
) -> AsyncIterator[MasterServer]:
    settings = fast_settings(tmp_path / "data", **overrides)
    async with MasterServer(settings=settings, clock=clock) as server:
        yield server


async def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind((source, 0))
    await loop.sock_connect(sock, ("127.0.0.1", port))
    return sock


async def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (EOF or reset)."""
    loop = asyncio.get_running_loop()
    data = b""

    async def drain() -> None:
        nonlocal data
        while True:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                return
            if not chunk:
                return
            data += chunk

    await asyncio.wait_for(drain(), WAIT)
    return data


async def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response (status, lower-cased headers, body by Content-Length)."""
    loop = asyncio.get_running_loop()
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), WAIT)
        assert chunk, f"closed before a response: {buf!r}"
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), WAIT)
        assert chunk
        body += chunk
    return int(lines[0].split()[1]), headers, body


def status_request(port: int) -> bytes:
    return f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def upgrade_request(port: int, extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    ).encode()


async def test_partial_headers_are_cut_off_after_the_header_timeout(tmp_path: Path) -> None:
    async with serving(tmp_path, http_header_timeout=0.2, http_keepalive_timeout=LONG) as lobby:
        loop = asyncio.get_running_loop()
        slow = await connect(lobby.port)
        with slow:
            # slowloris: a request line and some headers, never the blank line
            await loop.sock_sendall(slow, b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n")
            assert await read_until_closed(slow) == b""
        # a complete request on a fresh connection is still served
        ok = await connect(lobby.port)
        with ok:
            await loop.sock_sendall(ok, status_request(lobby.port))
            status, _, _ = await read_response(ok)
            assert status == 200


async def test_one_header_timer_cuts_every_slow_connection_and_no_served_one(
    tmp_path: Path,
) -> None:
    """Deadlines of several connections share one timer: a connection whose headers came
    in time leaves the queue and is served, the slow ones before and after it are cut,
    and the timer arms again for a slowloris that comes once the queue was empty."""
    async with serving(tmp_path, http_header_timeout=0.3, http_keepalive_timeout=LONG) as lobby:
        loop = asyncio.get_running_loop()
        first = await connect(lobby.port)
        served = await connect(lobby.port)
        second = await connect(lobby.port)
        with first, served, second:
            await loop.sock_sendall(first, b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
            await loop.sock_sendall(served, b"GET /api/status HTTP/1.1\r\n")
            await loop.sock_sendall(second, b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
            await loop.sock_sendall(served, f"Host: 127.0.0.1:{lobby.port}\r\n\r\n".encode())
            status, _, _ = await read_response(served)
            assert status == 200
            assert await read_until_closed(first) == b""
            assert await read_until_closed(second) == b""
            # kept alive past every deadline above, and served again
            await loop.sock_sendall(served, status_request(lobby.port))
            status, _, _ = await read_response(served)
            assert status == 200
        late = await connect(lobby.port)
        with late:
            await loop.sock_sendall(late, b"GET /api/status HTTP/1.1\r\n")
            assert await read_until_closed(late) == b""


async def test_a_websocket_outlives_the_header_timeout(tmp_path: Path) -> None:
    """The deadline covers the headers only: an open WebSocket is not cut by it."""
    async with serving(tmp_path, http_header_timeout=0.2, http_keepalive_timeout=LONG) as lobby:
        loop = asyncio.get_running_loop()
        token = await _login(lobby.port)
        ws = await raw_ws(lobby.port, token)
        with ws:
            # a slowloris opened after the WebSocket: once the lobby has cut it, the
            # WebSocket's own deadline (had it one) would have passed first
            slow = await connect(lobby.port)
            with slow:
                await loop.sock_sendall(slow, b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
                assert await read_until_closed(slow) == b""
            await loop.sock_sendall(ws, _masked_text(b'{"type":"heartbeat","message_id":"hb"}'))
            reply = b""
            while b'"reply_to"' not in reply:
                chunk = await asyncio.wait_for(loop.sock_recv(ws, 4096), WAIT)
                assert chunk, "the WebSocket was closed"
                reply += chunk
            assert b'"hb"' in reply


def _masked_text(payload: bytes) -> bytes:
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + key + masked


async def test_a_body_trickling_in_is_refused_and_the_connection_closed(tmp_path: Path) -> None:
    async with serving(tmp_path, http_body_timeout=0.2) as lobby:
        loop = asyncio.get_running_loop()
        slow = await connect(lobby.port)
        with slow:
            head = (
                f"POST /api/auth/register HTTP/1.1\r\nHost: 127.0.0.1:{lobby.port}\r\n"
                "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
            )
            await loop.sock_sendall(slow, head.encode() + b'{"username": "sl')
            status, _, body = await read_response(slow)
            assert status == 400 and json.loads(body)["code"] == "bad_request"
            assert await read_until_closed(slow) == b""


async def test_silent_and_idle_keepalive_connections_are_closed(tmp_path: Path) -> None:
    async with serving(tmp_path, http_header_timeout=LONG, http_keepalive_timeout=0.2) as lobby:
        loop = asyncio.get_running_loop()
        silent = await connect(lobby.port)
        with silent:
            assert await read_until_closed(silent) == b""
        idle = await connect(lobby.port)
        with idle:
            await loop.sock_sendall(idle, status_request(lobby.port))
            status, headers, _ = await read_response(idle)
            assert status == 200 and headers.get("connection", "").lower() != "close"
            assert await read_until_closed(idle) == b""  # idle after its request


@pytest.mark.parametrize("case", ["no token", "bad token", "too many connections"])
async def test_a_refused_upgrade_closes_the_socket(tmp_path: Path, case: str) -> None:
    async with serving(tmp_path, ws_connections_per_account=1) as lobby:
        loop = asyncio.get_running_loop()
        extra, expected = "", 401
        held: socket.socket | None = None
        if case == "bad token":
            extra = "Authorization: Bearer not-a-token\r\n"
        elif case == "too many connections":
            token = await _login(lobby.port)
            extra, expected = f"Authorization: Bearer {token}\r\n", 429
            held = await connect(lobby.port)
            await loop.sock_sendall(held, upgrade_request(lobby.port, extra))
            status, _, _ = await read_response(held)
            assert status == 101
        sock = await connect(lobby.port)
        with sock:
            # a client that sends frames right behind its upgrade request
            await loop.sock_sendall(sock, upgrade_request(lobby.port, extra) + b"\x81\x85junk!")
            status, headers, body = await read_response(sock)
            assert status == expected
            assert headers["connection"].lower() == "close"
            assert json.loads(body)["code"] in ("unauthorized", "rate_limited")
            assert await read_until_closed(sock) == b""
        if held is not None:
            held.close()


async def test_the_per_address_cap_refuses_one_address_and_serves_another(tmp_path: Path) -> None:
    cap = 3
    async with serving(tmp_path, http_max_connections_per_address=cap) as lobby:
        loop = asyncio.get_running_loop()
        held = [await connect(lobby.port) for _ in range(cap)]
        # the server has accepted the held ones once each answered a request
        for sock in held:
            await loop.sock_sendall(sock, status_request(lobby.port))
            assert (await read_response(sock))[0] == 200
        extra = await connect(lobby.port)
        with extra:
            status, headers, body = await read_response(extra)
            assert status == 429 and headers["retry-after"] == "1"
            assert json.loads(body)["details"] == {
                "scope": "connections",
                "limit": cap,
                "retry_after": 1,
            }
            assert await read_until_closed(extra) == b""
        other = await connect(lobby.port, source="127.0.0.2")
        with other:
            await loop.sock_sendall(other, status_request(lobby.port))
            assert (await read_response(other))[0] == 200
        # the held connections still work; closing one frees its slot
        await loop.sock_sendall(held[0], status_request(lobby.port))
        assert (await read_response(held[0]))[0] == 200
        held.pop().close()
        served = False
        for _ in range(200):  # until the server has seen that close (each try is a round trip)
            again = await connect(lobby.port)
            with again:
                await loop.sock_sendall(again, status_request(lobby.port))
                if (await read_response(again))[0] == 200:
                    served = True
                    break
        assert served
        for sock in held:
            sock.close()


async def test_malformed_requests_log_one_short_line_each_rate_limited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    async with serving(tmp_path, clock=clock) as lobby:
        loop = asyncio.get_running_loop()
        bad = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad: a\x00b\r\n\r\n"

        async def one() -> int:
            sock = await connect(lobby.port)
            with sock:
                await loop.sock_sendall(sock, bad)
                status, _, _ = await read_response(sock)
                return status

        for _ in range(20):  # 200 requests, 10 at a time
            assert await asyncio.gather(*(one() for _ in range(10))) == [400] * 10
        clock.advance(60)  # the bucket refills: the next line reports what was dropped
        assert await one() == 400
        await lobby.stop()
    records = [r for r in caplog.records if r.name.startswith(("aiohttp", "lobby.http"))]
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
    malformed = [r.getMessage() for r in records if "malformed HTTP request" in r.getMessage()]
    assert len(malformed) == LOG_BURST + 1
    assert all(len(line) < 300 and "\n" not in line for line in malformed)
    assert "InvalidHeader" in malformed[0] or "BadHttpMessage" in malformed[0]
    assert malformed[-1].endswith(f"({200 - LOG_BURST} similar lines not logged)")


async def _login(port: int) -> str:
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        creds = {"username": "guarded", "password": "correct horse"}
        async with http.post(f"{base}/api/auth/register", json=creds) as resp:
            assert resp.status == 201
        async with http.post(f"{base}/api/auth/login", json=creds) as resp:
            assert resp.status == 200
            return str((await resp.json())["token"])
