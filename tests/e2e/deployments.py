"""Where the end-to-end clients play: one lobby in this process, or a cluster of three.

Every client test that takes the ``deployment`` fixture (directly or through
``make_client``) runs twice:

* ``one``: a :class:`lobby.MasterServer` in the test's own event loop, SQLite in
  ``tmp_path``, as a developer runs it;
* ``cluster`` (marked ``cluster``; deselected from the default run, run with
  ``-m cluster``): three ``python -m lobby`` processes on PostgreSQL and Redis
  behind HAProxy, fresh for each test (a database, a Redis key prefix, lobbies and
  HAProxy of its own), with the test's players spread over the processes: the
  ``k``-th client goes to process ``k mod 3`` through HAProxy
  (:meth:`tests.lobby.cluster.procs.HAProxy.pinned_url`).

A test sees a :class:`Deployment`: URLs for its clients and each process's
``/api/status``. A test that needs the lobby in its own process (it restarts it,
or reads its memory) says why with ``@pytest.mark.one_process("reason")``; its
cluster run is skipped with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from lobby import MasterServer
from tests.lobby.cluster.procs import RedisServer

if TYPE_CHECKING:
    from tests.lobby.cluster.conftest import Cluster

__all__ = [
    "ClusterDeployment",
    "ClusterServers",
    "Deployment",
    "OneProcess",
    "cluster_env",
]


class Deployment(Protocol):
    """The lobby a test's clients talk to, however many processes it is."""

    kind: str
    """``one`` or ``cluster``."""

    def url_for(self, index: int) -> str:
        """The server URL of the test's ``index``-th client (spread over the processes)."""
        ...

    async def statuses(self) -> list[dict[str, Any]]:
        """``/api/status`` of every process, in order."""
        ...


class OneProcess:
    """A :class:`MasterServer` in the test's event loop."""

    kind = "one"

    def __init__(self, server: MasterServer) -> None:
        self.server = server

    def url_for(self, index: int) -> str:
        del index
        return self.server.url

    async def statuses(self) -> list[dict[str, Any]]:
        return [await _get_json(f"{self.server.url}/api/status")]


class ClusterDeployment:
    """Three lobby processes behind HAProxy; client ``k`` is pinned to process ``k mod 3``."""

    kind = "cluster"

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def url_for(self, index: int) -> str:
        lobbies = self.cluster.lobbies
        return self.cluster.proxy.pinned_url(lobbies[index % len(lobbies)])

    async def statuses(self) -> list[dict[str, Any]]:
        return [await _get_json(f"{lobby.url}/api/status") for lobby in self.cluster.lobbies]


class ClusterServers:
    """The servers e2e clusters share for a whole run: PostgreSQL and Redis.

    Each test's cluster gets a database cloned from a migrated template and a
    Redis key prefix of its own, so nothing one test leaves behind (accounts,
    character names, captured shards, parties) is seen by the next.
    """

    def __init__(self, postgres_url: str, redis: RedisServer) -> None:
        self.postgres_url = postgres_url
        self.redis = redis
        self._numbers = itertools.count()
        self._template: str | None = None

    @contextlib.asynccontextmanager
    async def cluster(self, env: Mapping[str, str]) -> AsyncIterator[ClusterDeployment]:
        """A fresh three-process cluster with ``env`` (``SHARDS_*`` settings), stopped after."""
        # imported here: the cluster tests' conftest imports the e2e one (fast_mesh)
        from tests.lobby.cluster.conftest import start_cluster, stop_cluster

        number = next(self._numbers)
        database = await self._fresh_database(f"e2e_{number}")
        settings = {**env, "SHARDS_CLUSTER_PREFIX": f"e2e{number}"}
        with tempfile.TemporaryDirectory(prefix="shards-e2e-cluster-") as tmp:
            running = await asyncio.to_thread(
                start_cluster, database, Path(tmp), redis=self.redis, **settings
            )
            try:
                yield ClusterDeployment(running)
            finally:
                await asyncio.to_thread(stop_cluster, running)

    async def _fresh_database(self, name: str) -> str:
        """A new database ``name`` (already migrated: cloned from the run's template)."""
        from lobby.storage import Database

        if self._template is None:
            self._template = "e2e_template"
            await self._execute(f'CREATE DATABASE "{self._template}"')
            db = await Database.open(_with_database(self.postgres_url, self._template), now=0.0)
            await db.close()
        await self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        return _with_database(self.postgres_url, name)

    async def _execute(self, sql: str) -> None:
        import asyncpg  # the lobby's PostgreSQL driver (the ``postgres`` extra)

        admin = await asyncpg.connect(self.postgres_url)
        try:
            await admin.execute(sql)
        finally:
            await admin.close()


def cluster_env(overrides: Mapping[str, Any]) -> dict[str, str]:
    """Lobby settings (as for :func:`tests.lobby.support.fast_settings`) as ``SHARDS_*``."""
    return {f"SHARDS_{key.upper()}": str(value) for key, value in overrides.items()}


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _get_json(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        resp.raise_for_status()
        body: dict[str, Any] = await resp.json()
        return body
