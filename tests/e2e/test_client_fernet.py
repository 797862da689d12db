"""The seed's Fernet layer over the lobby WebSocket (``encryption_enabled``), real lobby.

The lobby here runs with ``ws_fernet_secret``: ``/api/status`` lists
``ws_encodings: ["json", "fernet"]`` and ``/ws?encoding=fernet`` seals every
frame both ways with ``derive_fernet_key(secret, WS_FERNET_SALT)``.

* A client with the shared secret chats with a plain-JSON client through it
  (the lobby only accepts its frames because they open with the lobby's key),
  and sees the player already there with a level (from ``PEER_INFO``).
* A client with a wrong secret fails cleanly: the lobby closes its socket with
  1008 at its first frame, the client stops (no reconnection, DISCONNECT to
  its handlers, ``NotConnectedError`` on send) and the lobby keeps serving.
* Against a lobby without the setting, ``encryption_enabled=True`` refuses to
  connect rather than send in the clear.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lobby import MasterServer
from mesh import MessageType, NetworkClient
from mesh.client import FERNET_WS_SALT
from protocol.crypto import WS_FERNET_SALT
from protocol.errors import ApiError, ErrorCode, NotConnectedError
from tests.lobby.support import fast_settings

from .conftest import ClientFactory, Deployment, Inbox
from .deployments import OneProcess

__all__: list[str] = []

SECRET = "our shared lobby secret"


@pytest.fixture
def lobby_settings() -> dict[str, Any]:
    """The e2e lobby, offering the Fernet encoding (every process of a cluster)."""
    return {"chat_burst": 1000.0, "chat_rate": 1000.0, "ws_fernet_secret": SECRET}


def sealed_client(deployment: Deployment, secret: str, index: int) -> NetworkClient:
    return NetworkClient(
        deployment.url_for(index), p2p_port=0, encryption_enabled=True, encryption_key=secret
    )


async def test_fernet_frames_end_to_end(deployment: Deployment, make_client: ClientFactory) -> None:
    assert FERNET_WS_SALT == WS_FERNET_SALT  # one salt, from protocol
    bob = await make_client("Bob")  # plain JSON on the same lobby
    heard = Inbox()
    bob.register_handler(MessageType.CHAT, heard)
    sealed = sealed_client(deployment, SECRET, 1)
    try:
        await sealed.connect("sealed_user", "password123", register=True)
        assert (await sealed.get_status())["ws_encodings"] == ["json", "fernet"]
        echo, directory = Inbox(), Inbox()
        sealed.register_handler(MessageType.CHAT, echo)
        sealed.register_handler(MessageType.PEER_INFO, directory)
        created = await sealed.create_character("Vesper", "Azure Syndicate", "Rogue")
        await sealed.select_character(int(created["id"]))
        # Bob was there first: only his PEER_INFO names him, with his level
        await directory.wait_until(lambda xs: any(m.character_name == "Bob" for m in xs))
        (near,) = [p for p in sealed.get_nearby_players() if p.character_name == "Bob"]
        assert near.level == 1 and near.faction == "Crimson Covenant"
        mid = await sealed.send_chat("the secret plan is at dawn")
        (got,) = await heard.wait_until(lambda xs: any(m.message_id == mid for m in xs))
        assert got.content == "the secret plan is at dawn" and got.sender_name == "Vesper"
        await echo.wait_until(lambda xs: any(m.message_id == mid for m in xs))  # decrypted
        reply = await bob.send_chat("heard you")
        await echo.wait_until(lambda xs: any(m.message_id == reply for m in xs))
        assert (await sealed.send_whisper("Bob", "direct as ever")).path == "direct"
        if isinstance(deployment, OneProcess):  # the lobby's side: which socket is sealed
            encodings = {
                c.character.name: (c.frames.name if c.frames else "json")
                for c in deployment.server.hub.connections()
                if c.character is not None
            }
            assert encodings == {"Vesper": "fernet", "Bob": "json"}
    finally:
        await sealed.disconnect()


async def test_a_wrong_secret_fails_cleanly_and_the_lobby_serves_others(
    deployment: Deployment, make_client: ClientFactory
) -> None:
    bob = await make_client("Bob")
    good = sealed_client(deployment, SECRET, 1)
    wrong = sealed_client(deployment, "not the lobby's secret", 2)
    try:
        await good.connect("good_user", "password123", register=True)
        good_chat = Inbox()
        good.register_handler(MessageType.CHAT, good_chat)
        await good.select_character(
            int((await good.create_character("Keyed", "Azure Syndicate", "Mage"))["id"])
        )
        await wrong.connect("wrong_user", "password123", register=True)
        goodbyes = Inbox()
        wrong.register_handler(MessageType.DISCONNECT, goodbyes)
        await wrong.select_character(
            int((await wrong.create_character("Keyless", "Azure Syndicate", "Mage"))["id"])
        )
        await wrong.send_chat("can anyone read this?")  # does not open: the lobby closes 1008
        await wrong.wait_connection_state("closed")
        assert wrong.session.socket is not None and wrong.session.socket.last_close_code == 1008
        await goodbyes.wait_for(1)
        with pytest.raises(NotConnectedError):
            await wrong.send_chat("anyone?")
        # the lobby keeps serving the plain and the sealed client
        mid = await bob.send_chat("still here")
        await good_chat.wait_until(lambda xs: any(m.message_id == mid for m in xs))
        assert all(m.content != "can anyone read this?" for m in good_chat.items)
        # open sockets: Bob's and Keyed's (Keyless's was closed)
        assert sum(s["connections"] for s in await deployment.statuses()) == 2
    finally:
        await wrong.disconnect()
        await good.disconnect()


async def test_encryption_refused_when_the_lobby_does_not_offer_it(tmp_path: Path) -> None:
    async with MasterServer(settings=fast_settings(tmp_path / "plain-lobby")) as plain:
        client = NetworkClient(
            plain.url, p2p_port=0, encryption_enabled=True, encryption_key=SECRET
        )
        with pytest.raises(ApiError) as info:
            await client.connect("someone", "password123", register=True)
        assert info.value.code == ErrorCode.UNAVAILABLE
        keyless = NetworkClient(plain.url, p2p_port=0, encryption_enabled=True)
        with pytest.raises(ApiError) as info:
            await keyless.connect("someone", "password123")
        assert info.value.code == ErrorCode.VALIDATION_ERROR
        # a refused connect closed what it opened: nothing to disconnect, no warning
        assert client.connection_state == keyless.connection_state == "idle"
