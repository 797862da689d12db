"""The Fernet WebSocket encoding (``ws_fernet_secret``, ``/ws?encoding=fernet``), real lobby.

Every frame in both directions is one Fernet token of the JSON frame text, keyed
with ``derive_fernet_key(secret, WS_FERNET_SALT)``; a frame that does not open
closes that socket with 1008 while the lobby keeps serving everyone else; a
lobby without the setting refuses ``?encoding=fernet`` with HTTP 400 before the
upgrade.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lobby import LobbySettings, MasterServer
from protocol.crypto import WS_FERNET_SALT, FernetSealer, derive_fernet_key
from tests.lobby.support import ApiClient, FakeClock, Inbox, aiohttp_inbox, fast_settings, ws_url

__all__: list[str] = []

SECRET = "lobby and clients share this"
SEALER = FernetSealer(derive_fernet_key(SECRET, WS_FERNET_SALT))


class SealedSocket:
    """A client of the fernet encoding: seals what it sends, keeps every raw frame it gets."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, clock: FakeClock) -> None:
        self.ws = ws
        self.clock = clock
        self.raw: list[str] = []
        self.inbox = Inbox(self._recv)

    async def send(self, message: dict[str, Any], sealer: FernetSealer = SEALER) -> None:
        text = json.dumps(message)
        await self.ws.send_str(sealer.seal(text.encode(), now=self.clock()).decode())

    async def _recv(self) -> str | None:
        msg = await self.ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        self.raw.append(str(msg.data))
        return SEALER.open(str(msg.data).encode(), now=self.clock()).decode()


@pytest.fixture
async def sealed_lobby(tmp_path: Path, lobby_clock: FakeClock) -> AsyncIterator[MasterServer]:
    # its own data directory: the plain ``lobby`` fixture of the same test holds "lobby-data"
    settings = fast_settings(tmp_path / "sealed-data", ws_fernet_secret=SECRET)
    async with MasterServer(settings=settings, clock=lobby_clock) as server:
        yield server


async def user(url: str, http: aiohttp.ClientSession, name: str) -> tuple[ApiClient, int]:
    client = ApiClient(url, http)
    character = await client.play(
        name, character_class="Mage", character_name=f"{name.title()}Hero"
    )
    return client, int(character["id"])


async def test_status_lists_the_encodings(
    sealed_lobby: MasterServer, lobby: MasterServer, http: aiohttp.ClientSession
) -> None:
    for server, expected in ((sealed_lobby, ["json", "fernet"]), (lobby, ["json"])):
        async with http.get(server.url + "/api/status") as resp:
            assert resp.status == 200
            assert (await resp.json())["ws_encodings"] == expected


async def test_sealed_frames_round_trip_and_are_not_json_on_the_wire(
    sealed_lobby: MasterServer, http: aiohttp.ClientSession, lobby_clock: FakeClock
) -> None:
    alice, alice_id = await user(sealed_lobby.url, http, "alice")
    bob, _ = await user(sealed_lobby.url, http, "bob")
    url = ws_url(sealed_lobby.url)
    async with (
        http.ws_connect(url, headers=alice.headers(), params={"encoding": "fernet"}) as ws_a,
        http.ws_connect(url, headers=bob.headers()) as ws_b,  # plain JSON, as before
    ):
        a = SealedSocket(ws_a, lobby_clock)
        b = aiohttp_inbox(ws_b)
        await a.send({"type": "heartbeat", "message_id": "hb-1", "sent_at": lobby_clock()})
        beat = await a.inbox.next_type("heartbeat")
        assert beat["reply_to"] == "hb-1"
        await a.send({"type": "chat", "content": "the secret plan is at dawn"})
        for inbox in (a.inbox, b):
            got = await inbox.next_type("chat")
            assert got["content"] == "the secret plan is at dawn"
            assert got["sender_id"] == alice_id
        # an ERROR about a sealed request is sealed too, and the socket stays up
        await a.send({"type": "no_such_type", "message_id": "bad-1"})
        assert (await a.inbox.next_type("error"))["error_code"] == "unknown_type"
        await a.send({"type": "heartbeat", "message_id": "hb-2", "sent_at": lobby_clock()})
        assert (await a.inbox.next_type("heartbeat"))["reply_to"] == "hb-2"
    assert len(a.raw) >= 4
    for frame in a.raw:
        assert frame.startswith("gAAAAA")  # a Fernet token (version byte 0x80)
        assert "secret plan" not in frame and "heartbeat" not in frame
        with pytest.raises(ValueError):
            json.loads(frame)


async def test_frames_that_do_not_open_close_1008_and_others_are_served(
    sealed_lobby: MasterServer, http: aiohttp.ClientSession, lobby_clock: FakeClock
) -> None:
    alice, _ = await user(sealed_lobby.url, http, "alice")
    bob, _ = await user(sealed_lobby.url, http, "bob")
    url = ws_url(sealed_lobby.url)
    fernet = {"encoding": "fernet"}
    wrong = FernetSealer(derive_fernet_key("not the lobby's secret", WS_FERNET_SALT))
    async with http.ws_connect(url, headers=bob.headers(), params=fernet) as ws_b:
        b = SealedSocket(ws_b, lobby_clock)
        cases: list[tuple[str, Any]] = [
            ("plaintext JSON", json.dumps({"type": "heartbeat", "sent_at": lobby_clock()})),
            ("wrong key", wrong),
            ("garbage", "gAAAAA" + "x" * 80),
            ("expired", "expired"),
        ]
        for n, (label, bad) in enumerate(cases):
            async with http.ws_connect(url, headers=alice.headers(), params=fernet) as ws_a:
                a = SealedSocket(ws_a, lobby_clock)
                if isinstance(bad, FernetSealer):
                    await a.send({"type": "heartbeat", "sent_at": lobby_clock()}, sealer=bad)
                elif bad == "expired":
                    old = SEALER.seal(b'{"type": "heartbeat"}', now=lobby_clock() - 3600)
                    await ws_a.send_str(old.decode())
                else:
                    await ws_a.send_str(bad)
                with pytest.raises(ConnectionError):  # read until the lobby closes
                    await a.inbox.next(lambda m: m["type"] == "error")
                assert ws_a.close_code == 1008, label  # no (unreadable) ERROR first
            # the lobby keeps serving the other sealed client
            await b.send({"type": "heartbeat", "message_id": f"hb-{n}", "sent_at": lobby_clock()})
            assert (await b.inbox.next_type("heartbeat"))["reply_to"] == f"hb-{n}", label


async def test_a_lobby_without_the_secret_refuses_fernet_before_the_upgrade(
    lobby: MasterServer, http: aiohttp.ClientSession
) -> None:
    alice, _ = await user(lobby.url, http, "alice")
    url = ws_url(lobby.url).replace("ws://", "http://", 1)
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        **alice.headers(),
    }
    for encoding in ("fernet", "xml"):
        async with http.get(url, params={"encoding": encoding}, headers=upgrade) as resp:
            assert resp.status == 400
            body = await resp.json()
            assert body["code"] == "bad_request" and body["details"]["offered"] == ["json"]
            assert encoding in body["message"]
    # the lobby keeps serving: explicit json and the default both work
    for params in ({"encoding": "json"}, {}):
        async with http.ws_connect(ws_url(lobby.url), headers=alice.headers(), params=params) as ws:
            inbox = aiohttp_inbox(ws)
            await ws.send_str(json.dumps({"type": "heartbeat", "message_id": "hb", "sent_at": 1.0}))
            assert (await inbox.next_type("heartbeat"))["reply_to"] == "hb"


async def test_the_secret_is_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, http: aiohttp.ClientSession
) -> None:
    settings = fast_settings(tmp_path / "data", ws_fernet_secret=SECRET, log_level="DEBUG")
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump(mode="json"))
    with pytest.raises(ValueError, match="must not be empty"):
        LobbySettings(ws_fernet_secret="")
    caplog.set_level(logging.DEBUG)
    async with MasterServer(settings=settings) as server:
        alice, _ = await user(server.url, http, "alice")
        async with http.ws_connect(
            ws_url(server.url), headers=alice.headers(), params={"encoding": "fernet"}
        ) as ws:
            await ws.send_str("not a token")
            while (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
                pass
            assert ws.close_code == 1008
    assert SECRET not in caplog.text
