"""NetworkClient's lobby-facing parts alone, against a real lobby: LobbySession and PeerSide.

No NetworkClient here: each part is built by hand with what it depends on
(PeerSide on a LobbySession and a ClientState), as the client composes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from mesh.client import ClientState, LobbySession, PeerSettings, PeerSide
from protocol.errors import ApiError, ErrorCode, MeshError, PeerUnreachableError
from protocol.messages.base import BaseMessage
from protocol.messages.location import MoveMessage
from protocol.rest import CharacterOut, CharacterSelectResponse, LoginResponse, StatusResponse
from tests.e2e.deployments import Deployment

__all__: list[str] = []


class Lobby:
    """A session's callbacks: every message it forwards and whether it reported a loss."""

    def __init__(self) -> None:
        self.messages: list[BaseMessage] = []
        self.lost = asyncio.Event()

    def session(self, url: str) -> LobbySession:
        return LobbySession(url, on_message=self.messages.append, on_lost=self.lost.set)


SessionFactory = Callable[[], tuple[LobbySession, Lobby]]


@pytest.fixture
async def new_session(deployment: Deployment) -> AsyncIterator[SessionFactory]:
    """``session, seen = new_session()``: a LobbySession on the lobby, closed afterwards."""
    opened: list[LobbySession] = []

    def factory() -> tuple[LobbySession, Lobby]:
        seen = Lobby()
        opened.append(seen.session(deployment.url_for(len(opened))))  # spread
        return opened[-1], seen

    yield factory
    for session in opened:
        await session.close()


async def test_session_alone_logs_in_answers_requests_and_closes(
    new_session: SessionFactory,
) -> None:
    session, seen = new_session()
    assert session.phase == "idle" and session.connection_state == "idle"
    login = await session.open("user_aria", "password123", register=True)
    assert isinstance(login, LoginResponse) and login.username == "user_aria"
    assert session.phase == "open" and session.connected
    assert isinstance(session.status, StatusResponse) and session.lobby_public_key is not None

    assert await session.characters() == []
    created = await session.create_character("Aria", "Crimson Covenant", "Mage")
    assert isinstance(created, CharacterOut) and created["name"] == created.name == "Aria"
    with pytest.raises(ApiError) as no_character:  # the lobby answers ERROR to a request
        await session.request(MoveMessage(to_location_id=2))
    assert no_character.value.code == ErrorCode.NO_CHARACTER
    answer = await session.select({"character_id": created.id})
    assert isinstance(answer, CharacterSelectResponse) and answer.ticket is None
    details = await session.request(MoveMessage(to_location_id=2))
    assert details["location_id"] == 2
    assert any(m.type == "ack" for m in seen.messages)  # forwarded after settling

    await session.close()
    assert session.phase == "closed" and not session.connected
    assert not seen.lost.is_set()  # a close we asked for is no loss


async def test_session_reports_a_session_ended_elsewhere(
    new_session: SessionFactory,
) -> None:
    session, seen = new_session()
    await session.open("user_bo", "password123", register=True)
    await session.rest.post("/api/auth/logout")  # the token is revoked: the socket closes
    await asyncio.wait_for(seen.lost.wait(), 20)
    assert session.phase == "lost" and session.connection_state == "closed"


async def test_session_failed_open_closes_everything(
    new_session: SessionFactory,
) -> None:
    session, seen = new_session()
    await session.open("user_cy", "password123", register=True)
    await session.close()
    with pytest.raises(ApiError) as wrong:
        await session.open("user_cy", "not the password")
    assert wrong.value.status == 401
    assert session.phase == "closed" and session.socket is not None
    assert session.connection_state == "closed" and session.rest.token is None


async def test_peer_side_alone_registers_renews_and_looks_up(
    new_session: SessionFactory,
) -> None:
    sides: list[PeerSide] = []
    ids: list[int] = []
    try:
        for name in ("Alice", "Bob"):
            session, _ = new_session()
            await session.open(f"user_{name.lower()}", "password123", register=True)
            made = await session.create_character(name, "Crimson Covenant", "Warrior")
            ids.append(made.id)
            state = ClientState()
            side = PeerSide(
                session, state, on_message=lambda _: None, settings=PeerSettings(port=0)
            )
            sides.append(side)
            assert side.node is None and side.ticket is None
            answer = await side.select(made.id)
            state.select(answer.character)
            side.adopt_known()
            assert side.node is not None and side.ticket == answer.ticket
            assert side.renewal_due and side.ticket_expires_at == answer.ticket_expires_at
        alice, bob = sides
        alice_id = ids[0]
        assert await bob.lookup("alice") == alice_id  # GET /api/peers?name=, any case
        assert await bob.lookup(alice_id) == alice_id  # now known to bob's node
        with pytest.raises(MeshError) as own:
            await bob.lookup("Bob")
        assert own.value.code == ErrorCode.VALIDATION_ERROR
        with pytest.raises(PeerUnreachableError):
            await bob.lookup("Nobody")
        old = alice.ticket
        await alice.renew()
        assert alice.ticket is not None and alice.ticket != old and alice.renewal_due
    finally:
        for side in sides:
            await side.close()
    assert all(side.node is None and not side.renewal_due for side in sides)
