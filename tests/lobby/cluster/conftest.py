"""A lobby cluster for real: 3 ``python -m lobby`` processes on PostgreSQL + Redis behind HAProxy.

Skipped with the reason when redis-server, HAProxy or the PostgreSQL server
binaries are missing (``.ci/run`` installs them). Everything listens on
127.0.0.1 ports of its own and is torn down after the module, whatever happens.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mesh import NetworkClient, ReconnectPolicy
from protocol.crypto import Identity, b64url_encode
from tests.e2e.conftest import fast_mesh
from tests.lobby.cluster.procs import HAProxy, LobbyProcess, RedisServer, missing_programs
from tests.lobby.support import ApiClient, Inbox, aiohttp_inbox, ws_url
from tests.lobby.test_postgres import postgres_url as postgres_url  # the throwaway cluster

CHAT_BURST = 5
"""Chat budget of an account in the test cluster; the refill (``chat_rate``) is so slow
that a test's flood is refused at exactly this many, whichever processes it spreads over."""

_names = itertools.count()


@dataclass
class Cluster:
    """The running servers: ``lobbies[i].url`` directly, ``proxy.url`` through HAProxy."""

    redis: RedisServer
    lobbies: list[LobbyProcess]
    proxy: HAProxy
    work_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    owns_redis: bool = True


def start_cluster(
    postgres: str, work_dir: Path, count: int = 3, *, redis: RedisServer | None = None, **env: str
) -> Cluster:
    """Start Redis, ``count`` lobbies sharing ``postgres`` and a data directory, and HAProxy.

    Each lobby has a data directory of its own; they share the ticket key file.
    The first lobby starts alone (it migrates the database); the caller must
    :func:`stop_cluster`. With ``redis`` (already running) the cluster uses it and
    leaves it running (give each cluster its own ``SHARDS_CLUSTER_PREFIX``).
    """
    owns_redis = redis is None
    redis = redis or RedisServer()
    cluster = Cluster(redis, [], HAProxy(work_dir, []), work_dir, owns_redis=owns_redis)
    try:
        if owns_redis:
            redis.start()
        settings = {
            "SHARDS_CHAT_RATE": "0.0001",
            "SHARDS_CHAT_BURST": str(CHAT_BURST),
            "SHARDS_RECONNECT_GRACE": "30",
            "SHARDS_TICKET_KEY_FILE": str(work_dir / "ticket_key.pem"),
            **env,
        }
        cluster.env = settings
        args = ["--database-url", postgres, "--redis-url", redis.url]
        cluster.lobbies = [
            LobbyProcess(f"lobby{i}", work_dir / f"data{i}", args, settings) for i in range(count)
        ]
        cluster.lobbies[0].start()
        for lobby in cluster.lobbies[1:]:
            lobby.spawn()
        for lobby in cluster.lobbies[1:]:
            lobby.ready()
        cluster.proxy.backends = cluster.lobbies
        cluster.proxy.start()
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def stop_cluster(cluster: Cluster) -> None:
    cluster.proxy.stop()
    for lobby in cluster.lobbies:
        lobby.stop()
    if cluster.owns_redis:
        cluster.redis.stop()


def _skip_if_missing(*programs: str) -> None:
    missing = [p for p in missing_programs() if p in programs]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (Debian packages redis-server, haproxy)")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the module's own (for tests that need Redis but no lobbies)."""
    _skip_if_missing("redis-server")
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running_cluster(
    postgres: str, prefix: str = "shards-cluster-", **env: str
) -> Iterator[Cluster]:
    """:func:`start_cluster` in a temporary directory, stopped on exit (skipped when the
    server programs are missing)."""
    _skip_if_missing("redis-server", "haproxy")
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        running = start_cluster(postgres, Path(tmp), **env)
        try:
            yield running
        finally:
            stop_cluster(running)


@pytest.fixture(scope="module")
def cluster(postgres_url: str) -> Iterator[Cluster]:
    with running_cluster(postgres_url) as running:
        yield running


@dataclass
class Player:
    """A logged-in player with a selected character and an open WebSocket to ``base``."""

    api: ApiClient
    character: dict[str, Any]
    ws: aiohttp.ClientWebSocketResponse
    inbox: Inbox

    @property
    def id(self) -> int:
        return int(self.character["id"])

    async def send(self, msg_type: str, **fields: Any) -> None:
        await self.ws.send_str(json.dumps({"type": msg_type, **fields}))

    async def close(self) -> None:
        await self.ws.close()

    async def seen_or_next(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first message matching ``predicate``, already received or still to come."""
        for m in self.inbox.seen:
            if predicate(m):
                return m
        return await self.inbox.next(predicate)

    async def hears(self, contents: set[str]) -> list[dict[str, Any]]:
        """Wait until chats with each of ``contents`` have arrived (in any order)."""
        found = {
            m["content"]: m
            for m in self.inbox.seen
            if m.get("type") == "chat" and m.get("content") in contents
        }
        while len(found) < len(contents):
            m = await self.inbox.next(
                lambda m: m.get("type") == "chat" and m.get("content") in contents - found.keys()
            )
            found[m["content"]] = m
        return list(found.values())


def unique(prefix: str) -> str:
    """A username no other test of the module uses (they share one database)."""
    return f"{prefix}{next(_names):03d}"


async def select_character(
    http: aiohttp.ClientSession,
    base: str,
    username: str,
    faction: str = "Crimson Covenant",
    class_name: str = "Warrior",
) -> tuple[ApiClient, dict[str, Any]]:
    """Register, log in, create and select a character on ``base``: the API and character."""
    api = ApiClient(base, http)
    await api.register(username)
    await api.login(username)
    character = await api.create_character(f"{username.capitalize()}Hero", faction, class_name)
    await api.select(int(character["id"]))
    return api, character


async def join(
    http: aiohttp.ClientSession, base: str, username: str, faction: str = "Crimson Covenant"
) -> Player:
    """:func:`select_character` on ``base``, then open a WebSocket there."""
    api, character = await select_character(http, base, username, faction)
    ws = await http.ws_connect(ws_url(base), headers=api.headers())
    return Player(api, character, ws, aiohttp_inbox(ws))


async def join_as_peer(
    http: aiohttp.ClientSession, base: str, username: str, endpoint: str
) -> Player:
    """:func:`join`, with the character selected with fresh peer keys and ``endpoint`` (so
    it has a ticket and peer info the lobby can hand to others), as a mesh client does."""
    api = ApiClient(base, http)
    await api.register(username)
    await api.login(username)
    hero = await api.create_character(f"{username.capitalize()}Hero", "Verdant Pact", "Mage")
    identity = Identity.generate()
    await api.select(
        int(hero["id"]),
        peer_public_key=b64url_encode(identity.public_key),
        box_key=b64url_encode(identity.box_public_key),
        endpoints=[endpoint],
    )
    ws = await http.ws_connect(ws_url(base), headers=api.headers())
    return Player(api, hero, ws, aiohttp_inbox(ws))


@contextlib.asynccontextmanager
async def spread(
    http: aiohttp.ClientSession, cluster: Cluster, *factions: str, prefix: str = "p"
) -> AsyncIterator[list[Player]]:
    """One player per lobby process, in order (player i on lobby i), all closed on exit."""
    players: list[Player] = []
    try:
        for i, faction in enumerate(factions):
            players.append(await join(http, cluster.lobbies[i].url, unique(prefix), faction))
        yield players
    finally:
        for p in players:
            await p.close()


@pytest.fixture
async def on_cluster(cluster: Cluster) -> AsyncIterator[Any]:
    """``await on_cluster(name, lobby_index, **client_kwargs)``: a client with a character,
    logged in on that lobby process (the cluster's chat budget is small: chat sparingly)."""
    clients: list[NetworkClient] = []
    seeds = itertools.count(1)

    async def factory(name: str, index: int, **kwargs: Any) -> NetworkClient:
        kwargs.setdefault("p2p_port", 0)
        kwargs.setdefault("mesh_config", fast_mesh())
        kwargs.setdefault(
            "reconnect", ReconnectPolicy(initial_delay=0.05, max_delay=0.5, seed=next(seeds))
        )
        client = NetworkClient(cluster.lobbies[index].url, **kwargs)
        clients.append(client)
        await client.connect(unique(f"user_{name.lower()}"), "password123", register=True)
        character = await client.create_character(name, "Crimson Covenant", "Warrior")
        await client.select_character(int(character["id"]))
        return client

    yield factory
    for client in reversed(clients):
        await client.disconnect()
