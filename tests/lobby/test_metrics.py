"""GET /metrics: Prometheus text parsed with prometheus-client's own parser, moving with play."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from lobby import MasterServer
from tests.lobby.support import PASSWORD, ApiClient, aiohttp_inbox, fast_settings, ws_url

Player = Callable[..., Awaitable[tuple[ApiClient, dict[str, Any]]]]
Samples = dict[str, list[tuple[dict[str, str], float]]]

FAMILIES = {
    "shards_lobby_connections",
    "shards_lobby_players_online",
    "shards_lobby_ws_messages_received",
    "shards_lobby_ws_messages_sent",
    "shards_lobby_ws_closes",
    "shards_lobby_ws_slow_consumer_cuts",
    "shards_lobby_rate_limited",
    "shards_lobby_logins",
    "shards_lobby_password_hash_queue_depth",
    "shards_lobby_password_hash_seconds",
    "shards_lobby_http_request_duration_seconds",
    "shards_lobby_http_responses",
    "shards_lobby_relayed_messages",
    "shards_lobby_relayed_bytes",
    "shards_lobby_db_query_seconds",
    "shards_lobby_process_info",
}


async def scrape(http: aiohttp.ClientSession, url: str) -> tuple[set[str], Samples]:
    """Family names and samples (by sample name) of one scrape."""
    async with http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    families: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            samples.setdefault(s.name, []).append((dict(s.labels), s.value))
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 if none)."""
    return sum(
        v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    )


async def test_families_present_with_a_process_label_and_moving_with_play(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession, make_client: Any
) -> None:
    url = f"{lobby.url}/metrics"
    families, before = await scrape(http, url)
    assert families >= FAMILIES, FAMILIES - families
    process = lobby.ctx.metrics.process
    assert all(lab.get("process") == process for rows in before.values() for lab, _ in rows)
    info = before["shards_lobby_process_info"]
    assert info[0][0]["version"] and info[0][1] == 1.0
    # every location is listed, empty ones with 0
    assert len(before["shards_lobby_players_online"]) == len(lobby.ctx.world.locations)

    alice, a_char = await player("alice")
    bob, b_char = await player("bob")
    stranger = make_client()
    status, _, _ = await stranger.call(
        "POST", "/api/auth/login", {"username": "alice", "password": "wrong " + PASSWORD}
    )
    assert status == 401
    start = str(a_char["location_id"])
    async with (
        http.ws_connect(ws_url(lobby.url), headers=alice.headers()) as ws_a,
        http.ws_connect(ws_url(lobby.url), headers=bob.headers()) as ws_b,
    ):
        a, b = aiohttp_inbox(ws_a), aiohttp_inbox(ws_b)
        await ws_a.send_str(json.dumps({"type": "chat", "content": "hello"}))
        await a.next_type("chat")
        await b.next_type("chat")
        payload = "QUJD" * 10
        await ws_a.send_str(
            json.dumps({"type": "relay", "target_id": b_char["id"], "payload": payload})
        )
        await b.next_type("relay")
        for _ in range(6):  # chat_burst is 5 and the clock stands still: the 6th is refused
            await ws_b.send_str(json.dumps({"type": "chat", "content": "spam"}))
        await b.next(lambda m: m.get("error_code") == "rate_limited")
        _, during = await scrape(http, url)
        conns = lobby.hub.connections()
    # the lobby has counted a close once it is done with the connection
    await asyncio.wait_for(asyncio.gather(*(c.finished.wait() for c in conns)), 10)
    _, after = await scrape(http, url)

    def moved(name: str, samples: Samples = after, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    assert value(during, "shards_lobby_connections") == 2
    assert value(during, "shards_lobby_players_online", location_id=start) == 2
    assert value(after, "shards_lobby_players_online") == 0  # both left (1000 close: no grace)
    assert moved("shards_lobby_logins_total", result="ok") == 2
    assert moved("shards_lobby_logins_total", result="failed") == 1
    assert moved("shards_lobby_ws_messages_received_total", type="chat") == 7
    assert moved("shards_lobby_ws_messages_received_total", type="relay") == 1
    assert moved("shards_lobby_ws_messages_sent_total", type="chat") == 2 + 5 * 2
    assert moved("shards_lobby_ws_messages_sent_total", type="relay") == 1
    assert moved("shards_lobby_ws_messages_sent_total", type="error") >= 1
    assert moved("shards_lobby_rate_limited_total", scope="ws_handler") == 1
    assert moved("shards_lobby_relayed_messages_total") == 1
    assert moved("shards_lobby_relayed_bytes_total") == len(payload)
    assert moved("shards_lobby_ws_closes_total", code="1000") == 2
    assert moved("shards_lobby_password_hash_seconds_count", op="hash") == 2
    assert moved("shards_lobby_password_hash_seconds_count", op="verify") == 3
    assert value(after, "shards_lobby_password_hash_queue_depth") == 0
    login = {"method": "POST", "route": "/api/auth/login"}
    assert moved("shards_lobby_http_request_duration_seconds_count", **login) == 3
    assert moved("shards_lobby_http_responses_total", status="401", **login) == 1
    select = {"method": "POST", "route": "/api/characters/select", "status": "200"}
    assert moved("shards_lobby_http_responses_total", **select) == 2
    assert moved("shards_lobby_db_query_seconds_count", statement="select") > 0
    assert moved("shards_lobby_db_query_seconds_count", statement="insert") > 0


async def test_route_label_is_the_template_and_unmatched_paths_share_one(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> None:
    alice, _ = await player("alice")
    for n in (111, 222, 333):
        status, _, _ = await alice.call("DELETE", f"/api/characters/{n}")
        assert status == 404
    for path in ("/nope/1", "/nope/2", "/api/characters/1/x"):
        async with http.get(lobby.url + path) as resp:
            assert resp.status == 404
    _, samples = await scrape(http, f"{lobby.url}/metrics")
    routes = {lab["route"] for lab, _ in samples["shards_lobby_http_responses_total"]}
    assert "/api/characters/{character_id}" in routes and "(unmatched)" in routes
    assert not any(r.startswith("/nope") or r.endswith("/111") for r in routes)
    template = {"route": "/api/characters/{character_id}", "status": "404"}
    assert value(samples, "shards_lobby_http_responses_total", **template) == 3
    unmatched = {"route": "(unmatched)", "method": "-", "status": "404"}
    assert value(samples, "shards_lobby_http_responses_total", **unmatched) == 3


async def test_own_port_address_limits_and_lockout(tmp_path: Path) -> None:
    """metrics_port serves /metrics apart (not on the lobby's port); refusals are counted."""
    settings = fast_settings(
        tmp_path,
        metrics_port=0,
        metrics_process="lobby-a",
        rest_burst_per_address=8,
        rest_rate_per_address=0.001,
        login_max_failures_per_account=2,
    )
    async with MasterServer(settings=settings) as server, aiohttp.ClientSession() as http:
        url = server.metrics_url
        assert url is not None and not url.startswith(server.url)
        client = ApiClient(server.url, http)
        await client.register("alice")
        statuses = []
        for _ in range(3):
            status, _, _ = await client.call(
                "POST", "/api/auth/login", {"username": "alice", "password": "bad password"}
            )
            statuses.append(status)
        assert statuses == [401, 401, 429]  # two failures lock the account
        for _ in range(5):  # 4 requests so far; the burst of 8 runs out
            async with http.get(server.url + "/metrics") as resp:
                statuses.append(resp.status)
        assert statuses[3:] == [404, 404, 404, 404, 429]
        _, samples = await scrape(http, url)
        assert {lab["process"] for rows in samples.values() for lab, _ in rows} == {"lobby-a"}
        assert value(samples, "shards_lobby_logins_total", result="failed") == 2
        assert value(samples, "shards_lobby_logins_total", result="locked") == 1
        assert value(samples, "shards_lobby_rate_limited_total", scope="rest_address") == 1


async def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, metrics_enabled=False)
    async with MasterServer(settings=settings) as server, aiohttp.ClientSession() as http:
        assert server.metrics_url is None
        async with http.get(server.url + "/metrics") as resp:
            assert resp.status == 404
            assert (await resp.json())["code"] == "not_found"


async def test_two_lobbies_in_one_process_keep_their_own_counts(tmp_path: Path) -> None:
    one = MasterServer(settings=fast_settings(tmp_path / "one", metrics_process="one"))
    two = MasterServer(settings=fast_settings(tmp_path / "two", metrics_process="two"))
    async with one, two, aiohttp.ClientSession() as http:
        await ApiClient(one.url, http).register("alice")
        _, s1 = await scrape(http, f"{one.url}/metrics")
        _, s2 = await scrape(http, f"{two.url}/metrics")
        hashed = "shards_lobby_password_hash_seconds_count"
        assert value(s1, hashed, op="hash", process="one") == 1
        assert value(s2, hashed, op="hash") == 0
