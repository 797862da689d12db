"""LobbySocket against a small fake lobby WebSocket: hostile frames never kill the reader."""

from __future__ import annotations

import asyncio

from aiohttp import web

from mesh.client.rest import LobbyRest
from mesh.client.socket import LobbySocket, ReconnectPolicy
from protocol.codec import serialize
from protocol.messages import ErrorMessage
from protocol.messages.base import BaseMessage
from protocol.messages.system import HeartbeatMessage


async def test_deeply_nested_frames_become_error_messages_and_reading_goes_on() -> None:
    frames = [
        "[" * 5000,
        "[" * 5000 + "]" * 5000,
        '[{"a":' * 3000,
        "[" + serialize(HeartbeatMessage(sent_at=1.0)) + "]",
    ]

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for frame in frames:
            await ws.send_str(frame)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rest = LobbyRest(f"http://127.0.0.1:{port}")
    rest.token = "test-token"
    got: list[BaseMessage] = []
    done = asyncio.Event()

    def on_message(msg: BaseMessage) -> None:
        got.append(msg)
        if isinstance(msg, HeartbeatMessage):
            done.set()

    sock = LobbySocket(rest, on_message=on_message, policy=ReconnectPolicy(max_attempts=0))
    try:
        await sock.open()
        await asyncio.wait_for(done.wait(), timeout=10)
        errors = [m for m in got if isinstance(m, ErrorMessage)]
        assert len(errors) == 3, got
        assert all(e.error_code == "invalid_json" for e in errors), errors
        assert isinstance(got[-1], HeartbeatMessage)
        assert sock.state == "connected"
    finally:
        await sock.close()
        await rest.close()
        await runner.cleanup()


async def test_close_returns_when_the_lobby_keeps_talking_but_never_answers_it() -> None:
    """aiohttp's close reads until the lobby's close frame, with a fresh timeout per read:
    a lobby sending anything more often than that, and never the answer, used to hold
    ``close`` (and ``NetworkClient.disconnect``, Ctrl-C in a game) forever."""
    stop = asyncio.Event()

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoclose=False)
        await ws.prepare(request)
        for _ in range(600):  # bounded: 60 s at most
            if stop.is_set():
                break
            await ws.send_str(serialize(HeartbeatMessage(sent_at=1.0)))
            await asyncio.sleep(0.1)
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rest = LobbyRest(f"http://127.0.0.1:{runner.addresses[0][1]}")
    rest.token = "test-token"
    heard = asyncio.Event()
    sock = LobbySocket(
        rest,
        on_message=lambda msg: heard.set(),
        policy=ReconnectPolicy(max_attempts=0),
        close_timeout=0.5,
    )
    try:
        await sock.open()
        await asyncio.wait_for(heard.wait(), timeout=10)
        await asyncio.wait_for(sock.close(goodbye=b"bye"), timeout=30)
        assert sock.state == "closed"
    finally:
        stop.set()
        await sock.close()
        await rest.close()
        await runner.cleanup()
