"""The seed's Fernet layer over the lobby WebSocket (``encryption_enabled``).

The lobby does not offer it yet (see notes/ws_fernet_contract.md), so:

* against the real lobby, ``encryption_enabled=True`` refuses to connect rather
  than send in the clear;
* the client side of the wire format is checked end to end through a small
  gateway in front of the real lobby that implements the lobby side of the
  contract (advertises ``ws_encodings: ["json", "fernet"]`` in ``/api/status``,
  accepts ``/ws?encoding=fernet``, opens/seals every frame with the key derived
  from the shared secret). Every frame the client sent is a Fernet token and
  none holds the chat text.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from lobby import MasterServer
from mesh import MessageType, NetworkClient
from mesh.client import FERNET_WS_SALT
from protocol.crypto import FernetSealer, derive_fernet_key
from protocol.errors import ApiError, ErrorCode

from .conftest import ClientFactory, Inbox

__all__: list[str] = []

SECRET = "our shared lobby secret"


class FernetGateway:
    """The lobby side of the Fernet WebSocket contract, in front of a real lobby."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.sealer = FernetSealer(derive_fernet_key(SECRET, FERNET_WS_SALT))
        self.client_frames: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_get("/ws", self.ws)
        app.router.add_route("*", "/api/{tail:.*}", self.rest)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def rest(self, request: web.Request) -> web.Response:
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        async with self._http.request(
            request.method, self.upstream + request.path_qs, data=await request.read(),
            headers={**headers, "Content-Type": "application/json"},
        ) as resp:  # fmt: skip
            body = await resp.json(content_type=None)
            status = resp.status
        if request.path == "/api/status":
            body["ws_encodings"] = ["json", "fernet"]
        return web.json_response(body, status=status)

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        assert self._http is not None and request.query.get("encoding") == "fernet"
        upstream = await self._http.ws_connect(
            self.upstream.replace("http://", "ws://") + "/ws",
            headers={"Authorization": request.headers["Authorization"]},
        )
        ws = web.WebSocketResponse()
        await ws.prepare(request)

        async def down() -> None:
            async for msg in upstream:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    token = self.sealer.seal(str(msg.data).encode(), now=time.time())
                    await ws.send_str(token.decode())

        pump = asyncio.create_task(down())
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.client_frames.append(str(msg.data))
                    plain = self.sealer.open(str(msg.data).encode(), now=time.time(), ttl=60)
                    await upstream.send_str(plain.decode())
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            await upstream.close()
        return ws


@pytest.fixture
async def gateway(master: MasterServer) -> AsyncIterator[FernetGateway]:
    gw = FernetGateway(master.url)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def test_fernet_frames_end_to_end(gateway: FernetGateway, make_client: ClientFactory) -> None:
    bob = await make_client("Bob")
    heard = Inbox()
    bob.register_handler(MessageType.CHAT, heard)
    sealed = NetworkClient(gateway.url, p2p_port=0, encryption_enabled=True, encryption_key=SECRET)
    try:
        await sealed.connect("sealed_user", "password123", register=True)
        echo = Inbox()
        sealed.register_handler(MessageType.CHAT, echo)
        created = await sealed.create_character("Vesper", "Azure Syndicate", "Rogue")
        await sealed.select_character(int(created["id"]))
        mid = await sealed.send_chat("the secret plan is at dawn")
        (got,) = await heard.wait_until(lambda xs: any(m.message_id == mid for m in xs))
        assert got.content == "the secret plan is at dawn" and got.sender_name == "Vesper"
        await echo.wait_until(lambda xs: any(m.message_id == mid for m in xs))  # decrypted
        assert (await sealed.send_whisper("Bob", "direct as ever")).path == "direct"
    finally:
        await sealed.disconnect()
    assert gateway.client_frames
    for frame in gateway.client_frames:
        assert frame.startswith("gAAAAA")  # a Fernet token (version byte 0x80)
        assert "secret plan" not in frame


async def test_encryption_refused_when_the_lobby_does_not_offer_it(
    master: MasterServer,
) -> None:
    client = NetworkClient(master.url, p2p_port=0, encryption_enabled=True, encryption_key=SECRET)
    try:
        with pytest.raises(ApiError) as info:
            await client.connect("someone", "password123", register=True)
        assert info.value.code == ErrorCode.UNAVAILABLE
        client.encryption_key = None
        with pytest.raises(ApiError) as info:
            await client.connect("someone", "password123")
        assert info.value.code == ErrorCode.VALIDATION_ERROR
    finally:
        await client.disconnect()
