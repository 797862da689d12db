"""A bounded, seeded WebSocket fuzz against a live lobby, an honest player chatting beside it.

Two kinds of abuse, each answered as documented:

* 2,500 mutated messages in well-formed text frames (bytes cut, inserted, flipped; values
  swapped for hostile ones; fields dropped or added; deep nesting; oversize). Each one
  that ``protocol.codec.deserialize`` refuses must get an ``ERROR`` with the same code,
  in order, with ``ref_id`` = its ``message_id`` when that is a usable id, and the
  connection stays up; a HEARTBEAT after every batch is the barrier.
* 240 frame-level violations (reserved bits, unknown opcodes, oversize or fragmented
  control frames, a stray continuation, invalid UTF-8, a bad close payload, a frame over
  the hard size limit), each on its own connection: the lobby closes with 1002, 1007 or
  1009 and drops the socket.

Meanwhile the honest player keeps chatting and must get every one of its messages back.
Afterwards the lobby still serves, logged no error, and never answered ``internal_error``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from lobby import MasterServer
from protocol.codec import deserialize
from protocol.errors import ProtocolError
from tests.lobby.support import ApiClient, aiohttp_inbox, fast_settings, raw_ws, ws_url

Player = Callable[..., Awaitable[tuple[ApiClient, dict[str, Any]]]]

SEED = 20261204
MUTATED = 2500
BATCH = 25
VIOLATIONS = 240
MAX_MESSAGE = 16 * 1024
HARD_MAX = 64 * 1024

_ID = re.compile(r"[A-Za-z0-9_\-:.]{1,64}")
_DECODE_CODES = {"invalid_json", "invalid_message", "unknown_type", "version_mismatch",
                 "message_too_large"}  # fmt: skip

TEMPLATES: list[dict[str, Any]] = [
    {"type": "chat", "content": "hello"},
    {"type": "faction_chat", "content": "for the covenant"},
    {"type": "whisper", "content": "psst", "target_name": "Honest"},
    {"type": "heartbeat"},
    {"type": "move", "to_location_id": 2},
    {"type": "party_create"},
    {"type": "party_invite", "target_name": "Honest"},
    {"type": "trade_request", "target_name": "Honest"},
    {"type": "combat_start", "combat_id": "c1", "participants": []},
    {"type": "relay", "target_id": 1, "payload": "AAAA"},
    {"type": "world_announcement", "content": "hear ye"},
]
HOSTILE: list[Any] = [
    None, True, 0, -1, 2**63, -(2**63) - 1, 10**40, 1e308, -0.0, "", "\x00", "\ud800",
    "\u202e" * 10, "x" * 5000, [], {}, [[[]]], {"type": "chat"}, "chat", "1.0.0", "99.0.0",
]  # fmt: skip


def mutate(rng: random.Random, n: int) -> str:
    """One mutated message (a str: anything a text frame can carry)."""
    msg: dict[str, Any] = dict(rng.choice(TEMPLATES))
    msg["message_id"] = f"f-{n}"
    roll = rng.random()
    if roll < 0.25:
        msg[rng.choice([*msg, "version", "timestamp", "extra"])] = rng.choice(HOSTILE)
    elif roll < 0.35:
        msg.pop(rng.choice(list(msg)))
    elif roll < 0.45:
        msg["type"] = rng.choice(["", "CHAT", "nope", "disconnect_", "chat\x00", 5, None])
    elif roll < 0.5:
        depth = rng.choice([50, 500, 5000])
        msg["content"] = json.loads("[" * depth + "]" * depth) if depth < 900 else "deep"
        if depth >= 900:
            return json.dumps(msg)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
    elif roll < 0.55:
        msg["content"] = "y" * rng.choice([MAX_MESSAGE, MAX_MESSAGE * 2, HARD_MAX // 2])
    text = json.dumps(msg, ensure_ascii=rng.random() < 0.5)
    if roll >= 0.55:  # byte-level damage to the JSON text
        chars = list(text)
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            at = rng.randrange(len(chars) + 1)
            if op < 0.4 and chars:
                del chars[at : at + rng.randint(1, 6)]
            elif op < 0.7:
                chars.insert(at, rng.choice('{}[]",:\\ 0e-\x00\x7f\u00e9\U0001f600'))
            elif chars:
                chars[min(at, len(chars) - 1)] = chr(rng.randrange(32, 0x2FF))
        text = "".join(chars)
    return text.encode("utf-8", "replace").decode("utf-8")


def predicted(text: str) -> tuple[str, str | None] | None:
    """(ERROR code, ref_id) the lobby must answer ``text`` with; None if it is a valid message."""
    try:
        deserialize(text, max_size=MAX_MESSAGE)
    except ProtocolError as exc:
        ref = None
        if len(text) <= MAX_MESSAGE:
            try:
                raw = json.loads(text)
            except (ValueError, RecursionError):
                raw = None
            value = raw.get("message_id") if isinstance(raw, dict) else None
            ref = value if isinstance(value, str) and _ID.fullmatch(value) else None
        return exc.code.value, ref
    return None


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """One client frame (masked unless told otherwise)."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


VIOLATION_KINDS: list[tuple[str, Callable[[random.Random], bytes], set[int]]] = [
    ("rsv bits", lambda r: frame(0x1, b'{"type":"heartbeat"}', rsv=r.choice([1, 2, 4, 7])), {1002}),
    ("opcode", lambda r: frame(r.choice([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]), b"x"), {1002}),
    ("big ping", lambda r: frame(0x9, b"p" * r.randint(126, 300)), {1002}),
    ("fragmented ping", lambda r: frame(0x9, b"p", fin=False), {1002}),
    ("stray continuation", lambda r: frame(0x0, b"tail"), {1002}),
    ("bad utf-8", lambda r: frame(0x1, b'{"content":"\xff\xfe' + r.randbytes(3) + b'"}'), {1007}),
    ("close payload", lambda r: frame(0x8, r.choice([b"\x03", b"\x00\x00", b"\x0b\xb7"])), {1002}),
    ("over hard max", lambda r: frame(0x1, b"z" * (HARD_MAX + r.randint(1, 4096))), {1009}),
]  # fmt: skip


async def read_server_frame(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """The next frame the server sent (opcode, payload); (-1, b"") at EOF."""
    loop = asyncio.get_running_loop()

    async def need(n: int) -> bool:
        while len(buf) < n:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                return False
            if not chunk:
                return False
            buf.extend(chunk)
        return True

    if not await need(2):
        return -1, b""
    size, offset = buf[1] & 0x7F, 2
    if size == 126:
        if not await need(4):
            return -1, b""
        size, offset = struct.unpack("!H", bytes(buf[2:4]))[0], 4
    elif size == 127:
        if not await need(10):
            return -1, b""
        size, offset = struct.unpack("!Q", bytes(buf[2:10]))[0], 10
    if not await need(offset + size):
        return -1, b""
    opcode, payload = buf[0] & 0x0F, bytes(buf[offset : offset + size])
    del buf[: offset + size]
    return opcode, payload


async def violation(port: int, token: str, data: bytes) -> tuple[int | None, bool]:
    """Send ``data`` after an upgrade: (close code the server sent, whether it then hung up)."""
    sock = await raw_ws(port, token)
    loop = asyncio.get_running_loop()
    with sock:
        try:
            await loop.sock_sendall(sock, data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = bytearray()
        code: int | None = None
        while True:
            opcode, payload = await asyncio.wait_for(read_server_frame(sock, buf), 20)
            if opcode == -1:
                return code, True
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                try:  # answer the close, as a client should; the server hangs up
                    await loop.sock_sendall(sock, frame(0x8, payload[:2]))
                except (BrokenPipeError, ConnectionResetError):
                    pass


@pytest.fixture
async def fuzz_lobby(tmp_path: Any) -> Any:
    settings = fast_settings(
        tmp_path / "data",
        ws_max_message_size=MAX_MESSAGE,
        ws_hard_max_message_size=HARD_MAX,
        ws_message_rate=1e6,
        ws_message_burst=1e6,
        ws_address_message_rate=1e6,
        ws_address_message_burst=1e6,
        ws_connections_per_account=64,
        chat_rate=1e6,
        chat_burst=1e6,
        http_max_connections_per_address=0,
    )
    async with MasterServer(settings=settings) as server:
        yield server


async def test_ws_fuzz_with_an_honest_player_beside_it(
    fuzz_lobby: MasterServer,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    lobby = fuzz_lobby
    honest_client = ApiClient(lobby.url, http)
    fuzzer = ApiClient(lobby.url, http)
    for client, name in ((honest_client, "honest"), (fuzzer, "fuzzer")):
        await client.play(name, character_name=name.title())
    done = asyncio.Event()
    replies = 0

    async def honest() -> None:
        nonlocal replies
        async with http.ws_connect(ws_url(lobby.url), headers=honest_client.headers()) as ws:
            inbox = aiohttp_inbox(ws)
            n = 0
            while not done.is_set() or n < 20:
                n += 1
                await ws.send_str(json.dumps({"type": "chat", "content": f"honest {n}"}))
                await inbox.next(lambda m, n=n: m.get("content") == f"honest {n}", wait=20)
                replies += 1
            assert not ws.closed

    honest_task = asyncio.create_task(honest())
    rng = random.Random(SEED)
    errors_seen: list[dict[str, Any]] = []
    closes: list[int] = []
    try:
        sent = 0
        while sent < MUTATED:
            async with http.ws_connect(
                ws_url(lobby.url), headers=fuzzer.headers(), max_msg_size=0
            ) as ws:
                inbox = aiohttp_inbox(ws)
                while sent < MUTATED and not ws.closed:
                    texts = [mutate(rng, sent + i) for i in range(BATCH)]
                    expected = [p for p in map(predicted, texts) if p is not None]
                    for text in texts:
                        await ws.send_str(text)
                    sent += len(texts)
                    barrier = f"sync-{sent}"
                    await ws.send_str(json.dumps({"type": "heartbeat", "message_id": barrier}))
                    try:
                        await inbox.next(lambda m, b=barrier: m.get("reply_to") == b, wait=30)
                    except ConnectionError:  # a valid DISCONNECT closed it: check what came
                        closes.append(ws.close_code or 0)
                    got = [m for m in inbox.seen if m.get("type") == "error"]
                    inbox.seen.clear()
                    errors_seen.extend(got)
                    decode_errors = [
                        (m["error_code"], m.get("ref_id"))
                        for m in got
                        if m["error_code"] in _DECODE_CODES
                    ]
                    if not ws.closed:
                        assert decode_errors == expected, (texts, got)
                    else:  # answers up to the DISCONNECT are there, in order
                        assert decode_errors == expected[: len(decode_errors)], (texts, got)
        for i in range(VIOLATIONS):
            name, build, codes = VIOLATION_KINDS[i % len(VIOLATION_KINDS)]
            code, hung_up = await violation(lobby.port, str(fuzzer.token), build(rng))
            assert code in codes and hung_up, (name, code, hung_up)
    finally:
        done.set()
        await asyncio.wait_for(honest_task, 60)
    assert replies >= 20
    assert set(closes) <= {1000}
    assert not [m for m in errors_seen if m["error_code"] == "internal_error"]
    status, body, _ = await honest_client.call("GET", "/api/status")
    assert status == 200 and body["status"] == "ok"
    bad_logs = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not bad_logs, [r.getMessage() for r in bad_logs[:5]]
