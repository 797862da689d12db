"""NetworkClient against a real lobby: login, characters, select, chat, errors."""

from __future__ import annotations

import pytest

from mesh import MessageType, NetworkClient
from protocol.errors import ApiError, ErrorCode, MeshError, NotConnectedError

from .conftest import ClientFactory, Deployment, Inbox

__all__: list[str] = []


async def test_login_select_and_chat(make_client: ClientFactory) -> None:
    alice = await make_client("Alice")
    bob = await make_client("Bob")
    chats = Inbox()
    bob.register_handler(MessageType.CHAT, chats)
    mid = await alice.send_chat("hello everyone")
    (msg,) = await chats.wait_until(lambda items: any(m.message_id == mid for m in items))
    assert msg.content == "hello everyone" and msg.sender_name == "Alice"
    assert alice.node is not None and alice.ticket is not None
    assert alice.character is not None and alice.character["name"] == "Alice"


async def test_wrong_password_is_api_error(deployment: Deployment) -> None:
    client = NetworkClient(deployment.url_for(0), p2p_port=0)
    try:
        await client.register("someone", "password123")
        with pytest.raises(ApiError) as info:
            await client.connect("someone", "wrong-password")
        assert info.value.status == 401
        assert info.value.code == ErrorCode.INVALID_CREDENTIALS
    finally:
        await client.disconnect()


async def test_unreachable_lobby_and_calls_before_connect() -> None:
    client = NetworkClient("http://127.0.0.1:9", p2p_port=0)
    try:
        with pytest.raises(ApiError) as info:
            await client.connect("a", "b")
        assert info.value.status == 0 and info.value.code == ErrorCode.UNAVAILABLE
        with pytest.raises(NotConnectedError):
            await client.send_chat("nobody hears")
        with pytest.raises(NotConnectedError):
            await client.get_characters()
    finally:
        await client.disconnect()


async def test_whisper_to_oneself_is_refused(make_client: ClientFactory) -> None:
    alice = await make_client("Alice")
    with pytest.raises(MeshError) as info:
        await alice.send_whisper("alice", "talking to myself")
    assert info.value.code == ErrorCode.VALIDATION_ERROR
