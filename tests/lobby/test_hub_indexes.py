"""The hub's character, location and account indexes follow join, move, grace and leave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from lobby import MasterServer
from lobby.broker import Audience, AudienceKind, Push
from lobby.hub import Hub
from lobby.presence import Presence
from protocol.messages import ChatMessage
from tests.lobby.services.conftest import game_settings, new_player
from tests.lobby.support import FakeClock


def assert_indexes_match(hub: Hub) -> None:
    """The indexes hold exactly what a scan of every presence finds."""
    by_character: dict[int, dict[int, Presence]] = {}
    by_location: dict[int, set[Presence]] = {}
    for p in hub.presences():
        if p.character is not None:
            by_character.setdefault(p.character.id, {})[p.session_id] = p
            by_location.setdefault(p.character.location_id, set()).add(p)
    assert hub.index.by_character == by_character
    assert hub.index.by_location == by_location
    by_account: dict[int, dict[int, Presence]] = {}
    for p in hub.presences():
        by_account.setdefault(p.account_id, {})[p.session_id] = p
    assert hub.index.by_account == by_account
    assert hub.players_online == sum(1 for p in hub.presences() if p.character is not None)
    for account_id, mine in by_account.items():
        live = sum(1 for p in mine.values() if p.conn is not None)
        assert hub.connections_of_account(account_id) == live


class Watch:
    """Presence hooks as events: wait for a character to join or a session to leave."""

    def __init__(self, hub: Hub) -> None:
        self.joined: dict[int, asyncio.Event] = {}
        self.left: dict[int, asyncio.Event] = {}
        hub.on_join(self._on_join)
        hub.on_leave(self._on_leave)

    async def _on_join(self, p: Presence) -> None:
        if p.character is not None:
            self.joined.setdefault(p.character.id, asyncio.Event()).set()

    async def _on_leave(self, p: Presence) -> None:
        self.left.setdefault(p.session_id, asyncio.Event()).set()

    async def join(self, character_id: int) -> None:
        await asyncio.wait_for(self.joined.setdefault(character_id, asyncio.Event()).wait(), 10)

    async def leave(self, session_id: int) -> None:
        await asyncio.wait_for(self.left.setdefault(session_id, asyncio.Event()).wait(), 10)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[MasterServer]:
    settings = game_settings(tmp_path / "data", reconnect_grace=30.0)
    async with MasterServer(settings=settings, clock=FakeClock(1_800_000_000.0)) as s:
        yield s


async def test_indexes_follow_join_move_reselect_and_leave(server: MasterServer) -> None:
    hub = server.ctx.hub
    watch = Watch(hub)
    async with aiohttp.ClientSession() as http:
        a = await new_player(server.url, http, connect=False)
        b = await new_player(server.url, http, connect=False)
        assert_indexes_match(hub)
        for p in (a, b):
            await p.connect()
            await watch.join(p.id)
        assert_indexes_match(hub)
        pa, pb = hub.presence_of_character(a.id), hub.presence_of_character(b.id)
        assert pa is not None and pb is not None and pa is not pb
        start = pa.character.location_id if pa.character else -1
        assert hub.index.by_location[start] == {pa, pb}

        await a.request("move", to_location_id=2)
        assert_indexes_match(hub)
        assert pa.character is not None and pa.character.location_id == 2
        assert hub.index.by_location[2] == {pa} and hub.index.by_location[start] == {pb}
        assert hub.broadcast_to_location(2, ChatMessage(channel="say", content="x")) == 1

        # b selects another character: leaves as the old, joins as the new
        other = await b.client.create_character("Second", "Crimson Covenant", "Mage")
        await b.client.select(int(other["id"]))
        await watch.join(int(other["id"]))
        assert_indexes_match(hub)
        assert hub.presence_of_character(b.id) is None
        assert hub.presence_of_character(int(other["id"])) is pb
        assert not hub.send_to_character(b.id, ChatMessage(channel="say", content="x"))

        # a drops without a goodbye: inside the grace it stays indexed and gets a backlog
        assert pa.conn is not None
        await hub.detach(pa.conn)
        assert pa.conn is None and hub.presence(pa.session_id) is pa
        assert_indexes_match(hub)
        assert hub.presence_of_character(a.id) is pa
        assert hub.send_to_character(a.id, ChatMessage(channel="say", content="x"))
        assert len(pa.backlog) == 1
        await hub.end_session(pa.session_id)
        await watch.leave(pa.session_id)
        assert_indexes_match(hub)
        assert hub.presence_of_character(a.id) is None and 2 not in hub.index.by_location

        await b.disconnect()  # a goodbye: leaves at once
        await watch.leave(pb.session_id)
        assert_indexes_match(hub)
        assert hub.index.by_character == {} and hub.index.by_location == {}
        await a.disconnect()


def _queued(hub: Hub, session_id: int) -> int:
    presence = hub.presence(session_id)
    assert presence is not None and presence.conn is not None
    return len(presence.conn._queue)


async def test_broadcast_to_everyone_leaves_out_each_excluded_session(server: MasterServer) -> None:
    """An everyone-audience excludes its own session and the caller's, alone or both."""
    hub = server.ctx.hub
    watch = Watch(hub)
    async with aiohttp.ClientSession() as http:
        players = [await new_player(server.url, http) for _ in range(3)]
        for p in players:
            await watch.join(p.id)
        sessions = []
        for p in players:
            presence = hub.presence_of_character(p.id)
            assert presence is not None
            sessions.append(presence.session_id)
        a, b, c = sessions
        chat = ChatMessage(channel="global", content="x")
        assert hub.broadcast(chat, where=Audience.everyone()) == 3
        assert hub.broadcast(chat, where=Audience.everyone(exclude_session=a)) == 2
        assert hub.broadcast(chat, where=Audience.everyone(), exclude_session=b) == 2
        both = hub.broadcast(chat, where=Audience.everyone(exclude_session=a), exclude_session=b)
        assert both == 1
        # and the one left is the one that got it (queued: nothing is written before an await)
        queued = [_queued(hub, s) for s in sessions]
        hub.broadcast(chat, where=Audience.everyone(exclude_session=c), exclude_session=a)
        assert [_queued(hub, s) - n for s, n in zip(sessions, queued, strict=True)] == [0, 1, 0]
        for p in players:
            await p.disconnect()


async def test_a_push_from_the_stream_for_everyone_leaves_out_the_excluded_session_only(
    server: MasterServer,
) -> None:
    """deliver_push (a sequenced broker's delivery) of an everyone-audience: every presence
    but the excluded session, in order, cursor and all; one that also excludes a
    character leaves that one out too."""
    hub = server.ctx.hub
    watch = Watch(hub)
    async with aiohttp.ClientSession() as http:
        players = [await new_player(server.url, http) for _ in range(3)]
        for p in players:
            await watch.join(p.id)
        presences = [hub.presence_of_character(p.id) for p in players]
        assert all(presences)
        a, b, c = (p.session_id for p in presences if p is not None)
        queued = [_queued(hub, s) for s in (a, b, c)]
        text = '{"type":"chat","content":"x"}'
        late = 10**15  # after every cursor this process gave its own pushes

        def push(n: int) -> Push:
            return Push(text, f"{late}-{n}", (late, n))

        assert hub.deliver_push(Audience.everyone(exclude_session=b), push(1)) == 2
        assert hub.deliver_push(Audience.everyone(), push(2)) == 3
        everyone_but = Audience(AudienceKind.EVERYONE, None, a, players[2].id)
        assert hub.deliver_push(everyone_but, push(3)) == 1
        got = [_queued(hub, s) - n for s, n in zip((a, b, c), queued, strict=True)]
        assert got == [2, 2, 2]  # a: 1 and 2; b: 2 and 3; c: 1 and 2
        cursors = [p.cursor for p in presences if p is not None]
        assert cursors == [(late, 2), (late, 3), (late, 2)]
        for p in players:
            await p.disconnect()


async def test_a_session_handed_to_another_process_leaves_every_index(server: MasterServer) -> None:
    """hand_over drops the presence from the account index too, and bumps the version."""
    hub = server.ctx.hub
    watch = Watch(hub)
    async with aiohttp.ClientSession() as http:
        a = await new_player(server.url, http)
        b = await new_player(server.url, http)
        await watch.join(a.id)
        await watch.join(b.id)
        pa = hub.presence_of_character(a.id)
        assert pa is not None
        version = hub.presence_version
        hub.send_to_character(a.id, ChatMessage(channel="say", content="x"))
        assert hub.hand_over(pa.session_id) == []  # online: nothing was queued for later
        assert hub.presence(pa.session_id) is None and hub.presence_version > version
        assert_indexes_match(hub)
        assert hub.connections_of_account(pa.account_id) == 0
        assert hub.players_online == 1
        await b.disconnect()
