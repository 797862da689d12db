"""``MasterServer``: the lobby process's composition root (aiohttp app, storage, hub, services).

Usage::

    async with MasterServer(port=0, data_dir=tmp_path) as server:
        print(server.url)           # http://127.0.0.1:<bound port>

``start()`` binds the listening sockets (a busy port fails first), creates
(0700) and locks the data directory (:mod:`lobby.startup`: a second lobby on it
is refused), loads the world, opens (and migrates) the database, loads or
creates the lobby signing key, builds the core services and the hub, lets each
service ``setup(ctx)`` (register WS handlers, REST endpoints, hooks), then
listens. ``stop()`` stops listening, closes every WebSocket with 1001 after
flushing what was queued for it, waits for in-flight requests, closes the
services, the hashing pool and the database.

Services: any object with ``name``, ``async setup(ctx)`` and ``async close()``
(:class:`LobbyService`), passed as ``services=[...]`` or through
:meth:`MasterServer.add_service` before ``start()``. Chat is always there; the
game services of :mod:`lobby.services` follow the passed ones (a passed service
with the same ``name`` replaces the default). A service that needs tables
ships Alembic revisions and appends their directory to
:data:`lobby.storage.VERSION_LOCATIONS` at import.

With ``redis_url`` set, the process joins a cluster of lobby processes on that
Redis (:mod:`lobby.cluster`): the hub's pushes reach players on the other
processes, the presence directory and the chat/relay budgets are shared.

Explicit arguments override ``settings`` (whose own defaults and ``SHARDS_*``
environment variables fill the rest). ``clock`` is the injectable wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aiohttp import web
from pydantic import ValidationError

from lobby.accounts import AccountService
from lobby.admin import AdminService
from lobby.characters import CharacterService
from lobby.chat import ChatService
from lobby.cluster import RedisBroker, open_redis
from lobby.cluster_limits import RedisBuckets, RedisThrottleStore
from lobby.config import Clock, LobbySettings
from lobby.context import LobbyContext, LobbyServices
from lobby.game.world import load_world
from lobby.http.api import Api
from lobby.http.errors import error_middleware, rate_limit_middleware
from lobby.http.guard import ConnectionGuard, GuardedSite
from lobby.http.routes import add_core_routes
from lobby.http.ws import WebSocketEndpoint
from lobby.hub import Hub
from lobby.keys import load_or_create_key
from lobby.logs import request_middleware
from lobby.metrics import LobbyMetrics, metrics_handler
from lobby.pages import add_pages
from lobby.ratelimit import FallbackThrottleStore, SharedRateLimiter
from lobby.services import with_game_services
from lobby.sessions import SessionStore
from lobby.startup import DataDir, bind_listeners, sqlite_path
from lobby.storage import Database
from lobby.stun import StunServer
from lobby.version import SERVER_VERSION
from protocol.errors import ConfigError, LobbyError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["LobbyService", "MaintainedService", "MasterServer"]

log = logging.getLogger("lobby")


@runtime_checkable
class LobbyService(Protocol):
    """A pluggable part of the lobby (chat, world, parties, trades, ...)."""

    name: str

    async def setup(self, ctx: LobbyContext) -> None:
        """Register handlers, endpoints and hooks on ``ctx`` (called during start)."""

    async def close(self) -> None:
        """Release what ``setup`` took (called during stop, in reverse order)."""


@runtime_checkable
class MaintainedService(Protocol):
    """A service with periodic work: :meth:`maintain` runs on every maintenance pass."""

    async def maintain(self) -> None:
        """One pass (an exception is logged; the next pass runs anyway)."""


class MasterServer:
    """The master lobby: REST + WebSocket on aiohttp over SQLite or PostgreSQL."""

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        data_dir: str | Path | None = None,
        database_url: str | None = None,
        world_file: str | Path | None = None,
        settings: LobbySettings | None = None,
        clock: Clock | None = None,
        services: Sequence[LobbyService] = (),
    ) -> None:
        base = settings or LobbySettings()
        overrides: dict[str, Any] = {}
        if host is not None:
            overrides["host"] = host
        if port is not None:
            overrides["port"] = port
        if data_dir is not None:
            overrides["data_dir"] = Path(data_dir)
        if database_url is not None:
            overrides["database_url"] = database_url
        if world_file is not None:
            overrides["world_file"] = Path(world_file)
        self.settings = _with_overrides(base, overrides) if overrides else base
        self.clock: Clock = clock or time.time
        self._services: list[LobbyService] = [
            ChatService(),
            AdminService(),
            *with_game_services(services),
        ]
        self._ctx: LobbyContext | None = None
        self._runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._port: int | None = None
        self._last_cleanup = 0.0
        self._stun: StunServer | None = None
        self._data_dir: DataDir | None = None
        self._listeners: list[socket.socket] = []
        self._cluster: _Cluster | None = None

    # -- public -------------------------------------------------------------------------

    @property
    def ctx(self) -> LobbyContext:
        """The running lobby's context (after ``start()``)."""
        if self._ctx is None:
            raise LobbyError("the lobby is not started")
        return self._ctx

    @property
    def hub(self) -> Hub:
        return self.ctx.hub

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._port is None:
            raise LobbyError("the lobby is not started")
        return self._port

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def url(self) -> str:
        host = self.settings.host
        if host in ("0.0.0.0", "", "::"):  # noqa: S104 - only naming the wildcard
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def stun(self) -> StunServer | None:
        """The STUN responder (its ``port`` and ``responder.counters``), None when off."""
        return self._stun

    @property
    def stun_port(self) -> int | None:
        """The UDP port answering STUN Binding requests, or None when ``stun_enabled`` is off."""
        return None if self._stun is None else self._stun.port

    def add_service(self, service: LobbyService) -> None:
        """Add a service before ``start()``."""
        if self._ctx is not None:
            raise LobbyError("services must be added before start()")
        self._services.append(service)

    async def start(self) -> None:
        if self._ctx is not None:
            raise LobbyError("the lobby is already started")
        s = self.settings
        services = LobbyServices.collect(self._services)
        # the port first (a busy one fails before the database migrates), then the data
        # directory: created 0700, locked against a second lobby, its SQLite file writable
        listeners = bind_listeners(s.host, s.port)
        data_dir = DataDir(s.data_dir)
        db: Database | None = None
        try:
            data_dir.acquire(sqlite_path(s.resolved_database_url))
            world = load_world(s.world_file)
            key = load_or_create_key(
                s.data_dir, path=s.ticket_key_file, accepted=s.ticket_accepted_keys
            )
            db = await Database.open(s.resolved_database_url, now=self.clock())
            self._cluster = cluster = await _join_cluster(s, self.clock)
        except BaseException:
            if db is not None:
                await db.close()
            data_dir.release()
            for sock in listeners:
                sock.close()
            raise
        self._data_dir = data_dir
        self._listeners = listeners
        metrics = LobbyMetrics(s.metrics_process, version=SERVER_VERSION)
        metrics.instrument(db.engine)
        accounts = AccountService(db, s, self.clock, metrics)
        if cluster is not None:  # one login budget for every process (this one's if Redis fails)
            accounts.throttle.store = FallbackThrottleStore(cluster.logins, accounts.throttle.store)
        try:
            api = Api()
            ctx = LobbyContext(
                settings=s,
                clock=self.clock,
                world=world,
                db=db,
                accounts=accounts,
                sessions=SessionStore(db, s, self.clock),
                characters=CharacterService(db, world, self.clock),
                hub=Hub(s, self.clock, metrics, cluster.broker if cluster else None),
                api=api,
                key=key,
                started_at=self.clock(),
                services=services,
                metrics=metrics,
                buckets=cluster.buckets if cluster else None,
            )
            metrics.watch(ctx.hub, world)
            if cluster is not None:
                cluster.broker.attach(ctx.hub)
            self._ctx = ctx
            add_core_routes(api)
            for service in self._services:
                await service.setup(ctx)
            if cluster is not None:
                await cluster.broker.start()
            guard = ConnectionGuard(
                header_timeout=s.http_header_timeout,
                max_per_address=s.http_max_connections_per_address,
                clock=self.clock,
            )
            app = web.Application(
                client_max_size=s.max_body_size,
                middlewares=[
                    guard.middleware(),
                    request_middleware(metrics),
                    error_middleware,
                    rate_limit_middleware(
                        SharedRateLimiter(
                            "rest_address",
                            s.rest_rate_per_address,
                            s.rest_burst_per_address,
                            self.clock,
                            ctx.buckets,
                        ),
                        trust_forwarded_for=s.trust_forwarded_for,
                        on_refused=lambda: metrics.rate_limited("rest_address"),
                    ),
                ],
            )
            api.install(app, ctx)
            app.router.add_get("/ws", WebSocketEndpoint(ctx).handle)
            add_pages(app)
            if s.metrics_enabled and s.metrics_port is None:
                app.router.add_get("/metrics", metrics_handler(metrics))
            app.on_shutdown.append(self._on_shutdown)
            if s.stun_enabled:
                self._stun = StunServer.from_settings(s, self.clock)
                await self._stun.start(s.host, s.port if s.stun_port is None else s.stun_port)
                ctx.stun_port = self._stun.port
            runner = web.AppRunner(
                app,
                handle_signals=False,
                access_log=None,
                shutdown_timeout=s.ws_close_timeout * 2,
                keepalive_timeout=s.http_keepalive_timeout,
                lingering_time=s.http_body_timeout,  # discarding an unread body: same budget
                logger=guard.log,
            )
            await runner.setup()
            self._runner = runner
            for sock in listeners:
                site = GuardedSite(runner, guard, sock=sock, backlog=s.listen_backlog)
                await site.start()
            self._listeners = []  # the sites own them now
            self._port = int(runner.addresses[0][1])
            if s.metrics_enabled and s.metrics_port is not None:
                await self._serve_metrics(metrics)
        except BaseException:
            await self._teardown()
            raise
        self._maintenance = asyncio.create_task(self._maintenance_loop(), name="lobby-maintenance")
        # What start() built (modules, world, ORM tables, the app) lives as long as the lobby:
        # keep it out of every later collection. A reconnect storm grows the heap fast enough
        # to trigger a full collection every few thousand sockets, each walking all of it.
        gc.collect(1)
        gc.freeze()
        log.info("lobby started: database %s, data directory %s", db.dialect, s.data_dir)

    async def stop(self) -> None:
        """Stop gracefully (idempotent)."""
        if self._ctx is None:
            return
        log.info("lobby stopping")
        await self._teardown()
        log.info("lobby stopped")

    async def run_maintenance(self) -> None:
        """One maintenance pass: reconnect grace, services' periodic work
        (:class:`MaintainedService`), sessions that expired (tests call it directly).

        Runs every ``maintenance_interval`` seconds; deletes expired session rows every
        ``session_cleanup_interval`` seconds.
        """
        ctx = self.ctx
        await ctx.hub.expire()
        for service in self._services:
            if isinstance(service, MaintainedService):
                try:
                    await service.maintain()
                except Exception:
                    log.exception("maintenance of %s failed", getattr(service, "name", service))
        now = self.clock()
        for conn in ctx.hub.connections():
            if now < conn.session.expires_at:
                continue
            # REST calls may have slid the session since this connection last looked
            fresh = await ctx.sessions.get(conn.session.id)
            if fresh is None:
                log.info("%s session expired while connected", conn.describe())
                await ctx.hub.end_session(conn.session.id, reason="session expired")
            else:
                conn.session = fresh
        if now - self._last_cleanup >= self.settings.session_cleanup_interval:
            self._last_cleanup = now
            await ctx.sessions.cleanup()

    async def __aenter__(self) -> MasterServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def metrics_url(self) -> str | None:
        """Where ``/metrics`` is served (None when ``metrics_enabled`` is off)."""
        if not self.settings.metrics_enabled:
            return None
        if self._metrics_runner is None:
            return f"{self.url}/metrics"
        host, port = self._metrics_runner.addresses[0][:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    # -- internals ------------------------------------------------------------------------

    async def _serve_metrics(self, metrics: LobbyMetrics) -> None:
        """``/metrics`` alone on ``metrics_host:metrics_port`` (e.g. a private interface)."""
        s = self.settings
        app = web.Application()
        app.router.add_get("/metrics", metrics_handler(metrics))
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        self._metrics_runner = runner
        await web.TCPSite(runner, s.metrics_host or s.host, s.metrics_port).start()

    async def _on_shutdown(self, _app: web.Application) -> None:
        if self._ctx is not None:
            await self._ctx.hub.close_all()

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.maintenance_interval)
            try:
                await self.run_maintenance()
            except Exception:
                log.exception("maintenance pass failed")

    async def _teardown(self) -> None:
        ctx = self._ctx
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        elif ctx is not None:
            await ctx.hub.close_all()
        if self._stun is not None:
            await self._stun.close()
            self._stun = None
        for service in reversed(self._services):
            try:
                await service.close()
            except Exception:
                log.exception("service %s failed to close", getattr(service, "name", service))
        if self._cluster is not None:
            await self._cluster.close()
            self._cluster = None
        if ctx is not None:
            await ctx.accounts.close()
            await ctx.db.close()
        for sock in self._listeners:
            sock.close()
        self._listeners = []
        if self._data_dir is not None:
            self._data_dir.release()
            self._data_dir = None
        self._ctx = None
        self._port = None
        gc.unfreeze()  # what start() froze may be garbage now (collected as usual again)


@dataclass(frozen=True, slots=True)
class _Cluster:
    """This process's part in a cluster of lobby processes (``redis_url`` set)."""

    client: Redis
    broker: RedisBroker
    buckets: RedisBuckets
    logins: RedisThrottleStore

    async def close(self) -> None:
        await self.broker.close()
        await self.client.aclose()


async def _join_cluster(s: LobbySettings, clock: Clock) -> _Cluster | None:
    if not s.redis_url:
        return None
    client = await open_redis(s.redis_url)
    broker = RedisBroker(client, s, clock)
    prefix = s.cluster_prefix
    return _Cluster(
        client,
        broker,
        RedisBuckets(client, prefix, broker.link),
        RedisThrottleStore(client, prefix),
    )


def _with_overrides(base: LobbySettings, overrides: dict[str, Any]) -> LobbySettings:
    """``base`` with ``overrides`` applied, validated like a fresh settings object.

    ``model_copy(update=...)`` would skip validation (``port=70000`` would pass);
    a python-mode dump keeps ``SecretStr`` and ``Path`` values as they are, and
    ``model_validate`` does not re-read the environment.
    """
    try:
        return type(base).model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False, include_context=False)
        )
        raise ConfigError(f"invalid lobby settings: {problems}") from None
