"""A ``kill -9`` ed process's players are announced gone once for the whole cluster:
one ``PLAYER_LEFT_AREA`` each, through the Redis stream (cursor-stamped, replayed to a
resume), however many processes notice the death."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.lobby.cluster.conftest import Cluster, Player, running_cluster
from tests.lobby.cluster.test_cluster_resume import connect, drop, last_cursor, player
from tests.lobby.support import ApiClient
from tests.polling import eventually

pytestmark = pytest.mark.cluster


@pytest.fixture
def own_cluster(postgres_url: str) -> Iterator[Cluster]:
    """A cluster for this test alone (one of its processes is killed)."""
    with running_cluster(postgres_url, "shards-gone-") as running:
        yield running


def left_notice(of: Player) -> Any:
    return lambda m: m.get("type") == "player_left_area" and m.get("character_id") == of.id


async def test_a_dead_process_players_are_announced_once_through_the_stream(
    own_cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    first, second, third = own_cluster.lobbies
    doomed = await player(http, first.url, "doomed")
    near = await player(http, second.url, "near")
    far = await player(http, third.url, "far")
    watchers = (near, far)
    try:
        for w, lobby in ((near, second), (far, third)):
            w.ws, w.inbox = await connect(http, lobby.url, w)  # asks for cursors
        await doomed.send("chat", content="about to die")
        for w in watchers:
            await w.hears({"about to die"})
        before = last_cursor(near)

        first.kill()
        notices = [await w.inbox.next(left_notice(doomed), wait=20.0) for w in watchers]
        # one stream entry, read by both survivors: the same cursor on each
        assert "cursor" in notices[0], notices[0]
        assert notices[0]["cursor"] == notices[1]["cursor"]
        assert notices[0]["character_name"] == doomed.character["name"]

        # both survivors have dropped him (each raced for the announcement by then) ...
        async def dropped_everywhere() -> bool:
            for lobby in (second, third):
                api = ApiClient(lobby.url, http)
                api.token = near.api.token
                _, status, _ = await api.call("GET", "/api/status")
                if status["players_online"] != 2:
                    return False
            return True

        await eventually(dropped_everywhere)
        await far.send("chat", content="after the notices")
        for w in watchers:
            await w.hears({"after the notices"})
        # ... and the stream holds his notice once: a resume from before the death is
        # replayed exactly one, and the live socket got no second one
        await drop(near)
        near.ws, near.inbox = await connect(http, third.url, near, before)
        assert (await near.inbox.next_type("heartbeat"))["replay"] == "complete"
        replayed = [m for m in near.inbox.seen if left_notice(doomed)(m)]
        assert [m["cursor"] for m in replayed] == [notices[0]["cursor"]]
        assert sum(1 for m in far.inbox.seen if left_notice(doomed)(m)) == 1
    finally:
        for w in watchers:
            await w.close()
