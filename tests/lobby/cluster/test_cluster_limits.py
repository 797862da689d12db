"""Every budget of an address or an account is one for the cluster: a flood spread over
3 lobby processes is refused at the same total as on one process.

The cluster here has small budgets that barely refill (one token per 1,000 s), so each
flood passes exactly ``burst`` requests whichever processes it is spread over; with a
budget per process it would pass three times that. The lobbies trust
``X-Forwarded-For`` (they stand behind HAProxy), so every request of the setup comes
from an address of its own and each flood chooses its address.
(Chat, relay and login budgets: ``test_cluster_chat.py``.)
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.lobby.cluster.conftest import (
    Cluster,
    _skip_if_missing,
    start_cluster,
    stop_cluster,
    unique,
)
from tests.lobby.support import ApiClient, aiohttp_inbox, ws_url

pytestmark = pytest.mark.cluster

REST_ADDRESS_BURST = 6
REST_ACCOUNT_BURST = 20
WS_BURST = 4
"""Per connection; an account's is twice that."""
WS_ADDRESS_BURST = 6
PAIR_BURST = 3
ICE_BURST = 3
SLOW = "0.001"

LIMITS = {
    "SHARDS_TRUST_FORWARDED_FOR": "true",
    "SHARDS_REST_RATE_PER_ADDRESS": SLOW,
    "SHARDS_REST_BURST_PER_ADDRESS": str(REST_ADDRESS_BURST),
    "SHARDS_REST_RATE_PER_ACCOUNT": SLOW,
    "SHARDS_REST_BURST_PER_ACCOUNT": str(REST_ACCOUNT_BURST),
    "SHARDS_WS_MESSAGE_RATE": SLOW,
    "SHARDS_WS_MESSAGE_BURST": str(WS_BURST),
    "SHARDS_WS_ADDRESS_MESSAGE_RATE": SLOW,
    "SHARDS_WS_ADDRESS_MESSAGE_BURST": str(WS_ADDRESS_BURST),
    "SHARDS_WS_FLOOD_STRIKES": "1000",
    "SHARDS_PAIR_RATE": SLOW,
    "SHARDS_PAIR_BURST": str(PAIR_BURST),
    "SHARDS_ICE_RATE": SLOW,
    "SHARDS_ICE_BURST": str(ICE_BURST),
}

_addresses = itertools.count(1)


def new_address() -> str:
    """A documentation-range address no other request of the module used."""
    n = next(_addresses)
    return f"198.18.{n // 250}.{n % 250 + 1}"


class Anywhere(ApiClient):
    """A REST client each of whose requests seems to come from a new address."""

    username = ""

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {**super().headers(token), "X-Forwarded-For": new_address()}


@pytest.fixture(scope="module")
def tight(postgres_url: str) -> Iterator[Cluster]:
    _skip_if_missing("redis-server", "haproxy")
    with tempfile.TemporaryDirectory(prefix="shards-limits-") as tmp:
        running = start_cluster(postgres_url, Path(tmp), **LIMITS)
        try:
            yield running
        finally:
            stop_cluster(running)


def spread(cluster: Cluster, n: int) -> str:
    """The base URL of the process the ``n``-th request of a flood goes to."""
    return cluster.lobbies[n % len(cluster.lobbies)].url


async def player(http: aiohttp.ClientSession, base: str, *, select: bool = True) -> Anywhere:
    """A new account logged in on ``base`` (with a character selected, unless told)."""
    api = Anywhere(base, http)
    name = api.username = unique("lim")
    await api.register(name)
    await api.login(name)
    if select:
        hero = await api.create_character(f"{name.capitalize()}Hero", "Verdant Pact", "Mage")
        await api.select(int(hero["id"]))
    return api


def outcomes(statuses: list[int]) -> dict[int, int]:
    return {s: statuses.count(s) for s in sorted(set(statuses))}


async def test_rest_requests_of_one_address_over_three_processes_get_one_budget(
    tight: Cluster, http: aiohttp.ClientSession
) -> None:
    flooder = {"X-Forwarded-For": new_address()}
    statuses = []
    for n in range(3 * REST_ADDRESS_BURST):
        api = ApiClient(spread(tight, n), http)
        status, body, _ = await api.call("GET", "/api/status", headers=flooder)
        assert status == 200 or body["details"]["scope"] == "address"
        statuses.append(status)
    assert outcomes(statuses) == {200: REST_ADDRESS_BURST, 429: 2 * REST_ADDRESS_BURST}


async def test_rest_requests_of_one_account_over_three_processes_get_one_budget(
    tight: Cluster, http: aiohttp.ClientSession
) -> None:
    me = await player(http, spread(tight, 0), select=False)  # no call with the token yet
    statuses = []
    for n in range(3 * REST_ACCOUNT_BURST):
        api = Anywhere(spread(tight, n), http)
        api.token = me.token
        status, body, _ = await api.call("GET", "/api/characters")
        assert status == 200 or body["details"]["scope"] == "account"
        statuses.append(status)
    assert outcomes(statuses) == {200: REST_ACCOUNT_BURST, 429: 2 * REST_ACCOUNT_BURST}


async def _heartbeats(
    http: aiohttp.ClientSession, sockets: list[tuple[Anywhere, dict[str, str]]], each: int
) -> dict[str, int]:
    """Open one WebSocket per (client, headers), send ``each`` heartbeats on every one,
    round robin; how many were answered and how many refused."""
    opened = [await http.ws_connect(ws_url(api.base), headers=h) for api, h in sockets]
    try:
        inboxes = [aiohttp_inbox(ws) for ws in opened]
        for k in range(each):
            for i, ws in enumerate(opened):
                await ws.send_str(json.dumps({"type": "heartbeat", "message_id": f"h{i}-{k}"}))
        counts = {"answered": 0, "rate_limited": 0}
        for inbox in inboxes:
            for _ in range(each):
                got = await inbox.next(lambda m: m.get("type") in ("heartbeat", "error"))
                if got["type"] == "heartbeat":
                    counts["answered"] += 1
                else:
                    assert got["error_code"] == "rate_limited", got
                    counts["rate_limited"] += 1
        return counts
    finally:
        for ws in opened:
            await ws.close()


async def test_ws_messages_of_one_account_over_three_processes_get_one_budget(
    tight: Cluster, http: aiohttp.ClientSession
) -> None:
    """Three sessions of one account, one per process, each within its connection's
    budget: together past the account's (twice a connection's)."""
    first = await player(http, spread(tight, 0), select=False)
    sockets: list[tuple[Anywhere, dict[str, str]]] = []
    for n in range(3):
        api = Anywhere(spread(tight, n), http)
        await api.login(first.username)
        sockets.append((api, api.headers()))
    counts = await _heartbeats(http, sockets, WS_BURST)
    assert counts == {"answered": 2 * WS_BURST, "rate_limited": WS_BURST}


async def test_ws_messages_of_one_address_over_three_processes_get_one_budget(
    tight: Cluster, http: aiohttp.ClientSession
) -> None:
    """Three accounts behind one address, one per process, each within its own budgets."""
    address = new_address()
    sockets = []
    for n in range(3):
        api = await player(http, spread(tight, n), select=False)
        sockets.append((api, {**api.headers(), "X-Forwarded-For": address}))
    counts = await _heartbeats(http, sockets, WS_BURST - 1)
    assert counts == {
        "answered": WS_ADDRESS_BURST,
        "rate_limited": 3 * (WS_BURST - 1) - WS_ADDRESS_BURST,
    }


@pytest.mark.parametrize(
    ("method", "path", "burst"),
    [
        ("POST", "/api/peers/999999999/pair", PAIR_BURST),
        ("GET", "/api/turn/credentials", ICE_BURST),
    ],
    ids=["whisper-pairings", "ice-credentials"],
)
async def test_pairings_and_ice_requests_of_one_account_get_one_budget(
    tight: Cluster, http: aiohttp.ClientSession, method: str, path: str, burst: int
) -> None:
    me = await player(http, spread(tight, 0))
    statuses: list[int] = []
    details: list[Any] = []
    for n in range(3 * burst):
        api = Anywhere(spread(tight, n), http)
        api.token = me.token
        status, body, _ = await api.call(method, path)
        statuses.append(status)
        details.append(body)
    refused = [b for s, b in zip(statuses, details, strict=True) if s == 429]
    assert len(refused) == 2 * burst, (statuses, details)
    # the rest got the answer of the endpoint itself: nobody to pair with, or credentials
    assert set(statuses) - {429} == ({404} if method == "POST" else {200})
