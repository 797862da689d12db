"""Resume cursors across lobby processes, on the real Redis stream: a client that drops
and resumes on another process gets exactly what it missed, or is told a gap."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from lobby.cluster import open_redis
from protocol.resume import RESUME_CURSOR_PARAM
from tests.lobby.cluster.conftest import Cluster, Player, select_character, unique
from tests.lobby.support import aiohttp_inbox, ws_url

pytestmark = pytest.mark.cluster


async def connect(
    http: aiohttp.ClientSession, base: str, p: Player | Any, cursor: str = ""
) -> tuple[aiohttp.ClientWebSocketResponse, Any]:
    ws = await http.ws_connect(
        ws_url(base), headers=p.api.headers(), params={RESUME_CURSOR_PARAM: cursor}
    )
    return ws, aiohttp_inbox(ws)


async def player(http: aiohttp.ClientSession, base: str, name: str) -> Player:
    api, character = await select_character(http, base, unique(name), "Azure Syndicate")
    ws = await http.ws_connect(ws_url(base), headers=api.headers())
    return Player(api, character, ws, aiohttp_inbox(ws))


async def drop(p: Player) -> None:
    """The network drops ``p``'s socket (no close frame: the lobby keeps its presence)."""
    p.ws._response.connection.transport.abort()  # type: ignore[union-attr]
    with contextlib.suppress(ConnectionError):
        await p.inbox.next(lambda m: False, wait=10.0)


def last_cursor(p: Player) -> str:
    cursors = [m["cursor"] for m in p.inbox.seen if "cursor" in m]
    assert cursors
    return str(cursors[-1])


def chats(p: Player) -> list[str]:
    return [m["content"] for m in p.inbox.seen if m.get("type") == "chat"]


@dataclass
class Away:
    """A roamer (on the first process) who saw the speaker's (second) ``said`` and then
    dropped; ``cursor`` is the last one it saw."""

    speaker: Player
    roamer: Player
    cursor: str


@contextlib.asynccontextmanager
async def roamer_away(
    http: aiohttp.ClientSession, cluster: Cluster, said: str
) -> AsyncIterator[Away]:
    first, second, _ = cluster.lobbies
    speaker = await player(http, second.url, "speak")
    roamer = await player(http, first.url, "roam")
    try:
        roamer.ws, roamer.inbox = await connect(http, first.url, roamer)
        await speaker.send("chat", content=said)
        await roamer.hears({said})
        cursor = last_cursor(roamer)
        await drop(roamer)
        yield Away(speaker, roamer, cursor)
    finally:
        await speaker.close()
        await roamer.close()


async def test_a_client_resuming_on_another_process_gets_exactly_what_it_missed(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    async with roamer_away(http, cluster, "seen 0") as away:
        speaker, roamer = away.speaker, away.roamer
        for n in range(3):
            await speaker.send("chat", content=f"missed {n}")
        await speaker.hears({f"missed {n}" for n in range(3)})
        third = cluster.lobbies[2]
        roamer.ws, roamer.inbox = await connect(http, third.url, roamer, away.cursor)
        notice = await roamer.inbox.next_type("heartbeat")
        assert notice["replay"] == "complete"
        await speaker.send("chat", content="live")
        await roamer.hears({"live"})
        assert chats(roamer) == ["missed 0", "missed 1", "missed 2", "live"]


async def test_a_cursor_older_than_the_stream_is_told_a_gap(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    async with roamer_away(http, cluster, "old") as away:
        speaker, roamer = away.speaker, away.roamer
        await speaker.send("chat", content="kept")
        await speaker.hears({"kept"})
        # the stream trims its head past the roamer's cursor (as the grace window would)
        ms, _, seq = away.cursor.partition("-")
        client = await open_redis(cluster.redis.url)
        try:
            await client.xtrim("shards:stream", minid=f"{ms}-{int(seq) + 1}", approximate=False)
        finally:
            await client.aclose()
        third = cluster.lobbies[2]
        roamer.ws, roamer.inbox = await connect(http, third.url, roamer, away.cursor)
        notice = await roamer.inbox.next_type("heartbeat")
        assert notice["replay"] == "gap"
        assert chats(roamer) == ["kept"]  # what the stream still has comes all the same
