"""Prometheus metrics of one lobby: a per-server registry and the calls that feed it.

Each :class:`~lobby.server.MasterServer` owns one :class:`LobbyMetrics` (its own
``CollectorRegistry``, so several lobbies in one process never share or collide)
and serves it as Prometheus text at ``GET /metrics`` (no player token; the
``metrics_*`` settings turn it off or move it to an address of its own). Every
family carries a ``process`` label (setting ``metrics_process``, default
``<hostname>:<pid>``) so that the series of several lobby processes behind one
Prometheus can be told apart and summed; ``shards_lobby_process_info`` names the
version of each.

Families (all prefixed ``shards_lobby_``):

==============================================  =========  ================================
``connections``                                 gauge      open WebSockets (at scrape time)
``players_online{location_id,location}``        gauge      presences with a character, per
                                                           location (every location listed)
``ws_messages_received_total{type}``            counter    decoded client messages
``ws_messages_sent_total{type}``                counter    messages queued to clients (a
                                                           broadcast counts its recipients)
``ws_closes_total{code}``                       counter    WebSocket closes by close code
                                                           (unknown codes: ``other``)
``ws_slow_consumer_cuts_total``                 counter    clients cut off with 1013
``rate_limited_total{scope}``                   counter    refusals: ``rest_address``,
                                                           ``rest_account``, ``ws_message``,
                                                           ``ws_handler`` (chat, relay, ...)
``logins_total{result}``                        counter    ``ok``, ``failed``, ``locked``
``password_hash_queue_depth``                   gauge      hash/verify jobs queued or running
``password_hash_seconds{op}``                   histogram  ``hash`` / ``verify``, queue wait
                                                           included (what a login waits)
``http_request_duration_seconds{method,route}``  histogram  REST latency by route template
``http_responses_total{method,route,status}``   counter    REST answers by status
``relayed_messages_total``                      counter    RELAY envelopes forwarded
``relayed_bytes_total``                         counter    their payload bytes (base64 text)
``db_query_seconds{statement}``                 histogram  ``select``, ``insert``, ``update``,
                                                           ``delete``, ``other``
``process_info{process,version}``               info       one sample per process
==============================================  =========  ================================

Hot paths pay one dictionary lookup and one ``inc`` on a label child bound at
start (:meth:`LobbyMetrics.received`, :meth:`LobbyMetrics.sent` take the message
type as it is); gauges that describe state (connections, players per location)
are computed only when Prometheus scrapes. ``route`` is the aiohttp route
template (``/api/characters/{character_id}``), never the raw path; a request
that matched no route is ``(unmatched)`` with method ``-``, so a scanner cannot
grow the label space.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from protocol.messages import MessageType

if TYPE_CHECKING:
    from lobby.game.world import WorldDefinition
    from lobby.hub import Hub

__all__ = [
    "KNOWN_CLOSE_CODES",
    "PREFIX",
    "UNMATCHED_ROUTE",
    "LobbyMetrics",
    "LoginResult",
    "RateScope",
    "default_process_label",
    "metrics_handler",
]

PREFIX = "shards_lobby"
UNMATCHED_ROUTE = "(unmatched)"
KNOWN_CLOSE_CODES = (1000, 1001, 1006, 1008, 1009, 1011, 1013, 4000)
"""Close codes with a label of their own; any other is counted as ``other``."""

LoginResult = Literal["ok", "failed", "locked"]
RateScope = Literal["rest_address", "rest_account", "ws_message", "ws_handler"]
HashOp = Literal["hash", "verify"]

_RATE_SCOPES: tuple[RateScope, ...] = ("rest_address", "rest_account", "ws_message", "ws_handler")
_LOGIN_RESULTS: tuple[LoginResult, ...] = ("ok", "failed", "locked")
_STATEMENTS = ("select", "insert", "update", "delete", "other")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DB_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
_HASH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_QUERY_START = "shards_query_started"


def default_process_label() -> str:
    """``<hostname>:<pid>``: unique per lobby process on a set of machines."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LobbyMetrics:
    """The metric families of one lobby (see the module docstring) in a registry of its own."""

    def __init__(self, process: str | None = None, *, version: str = "") -> None:
        self.process = process or default_process_label()
        self.registry = CollectorRegistry(auto_describe=True)
        p = self.process
        r = self.registry
        Info(f"{PREFIX}_process", "This lobby process", ["process"], registry=r).labels(p).info(
            {"version": version}
        )
        received = Counter(
            f"{PREFIX}_ws_messages_received",
            "Client messages decoded, by type",
            ["process", "type"],
            registry=r,
        )
        sent = Counter(
            f"{PREFIX}_ws_messages_sent",
            "Messages queued to clients, by type (a broadcast counts each recipient)",
            ["process", "type"],
            registry=r,
        )
        self._received = {t: received.labels(p, t.value) for t in MessageType}
        self._sent = {t: sent.labels(p, t.value) for t in MessageType}
        closes = Counter(
            f"{PREFIX}_ws_closes", "WebSocket closes by close code", ["process", "code"], registry=r
        )
        self._closes = {c: closes.labels(p, str(c)) for c in KNOWN_CLOSE_CODES}
        self._close_other = closes.labels(p, "other")
        self._slow = Counter(
            f"{PREFIX}_ws_slow_consumer_cuts",
            "Clients cut off because their send queue filled up (close 1013)",
            ["process"],
            registry=r,
        ).labels(p)
        limited = Counter(
            f"{PREFIX}_rate_limited",
            "Rate-limit refusals by scope",
            ["process", "scope"],
            registry=r,
        )
        self._limited = {s: limited.labels(p, s) for s in _RATE_SCOPES}
        logins = Counter(
            f"{PREFIX}_logins", "Login attempts by result", ["process", "result"], registry=r
        )
        self._logins = {x: logins.labels(p, x) for x in _LOGIN_RESULTS}
        self._hash_queue = Gauge(
            f"{PREFIX}_password_hash_queue_depth",
            "Password hash/verify jobs queued or running",
            ["process"],
            registry=r,
        ).labels(p)
        hash_seconds = Histogram(
            f"{PREFIX}_password_hash_seconds",
            "Password hash/verify time including the wait for a worker",
            ["process", "op"],
            buckets=_HASH_BUCKETS,
            registry=r,
        )
        self._hash_seconds = {op: hash_seconds.labels(p, op) for op in ("hash", "verify")}
        self._http_seconds = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "REST request latency by route template",
            ["process", "method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._http_responses = Counter(
            f"{PREFIX}_http_responses",
            "REST answers by route template and status",
            ["process", "method", "route", "status"],
            registry=r,
        )
        self._http_children: dict[tuple[str, str], Any] = {}
        self._status_children: dict[tuple[str, str, int], Any] = {}
        self._relayed = Counter(
            f"{PREFIX}_relayed_messages", "RELAY envelopes forwarded", ["process"], registry=r
        ).labels(p)
        self._relayed_bytes = Counter(
            f"{PREFIX}_relayed_bytes",
            "Payload bytes of forwarded RELAY envelopes",
            ["process"],
            registry=r,
        ).labels(p)
        db_seconds = Histogram(
            f"{PREFIX}_db_query_seconds",
            "Database statement latency by statement kind",
            ["process", "statement"],
            buckets=_DB_BUCKETS,
            registry=r,
        )
        self._db_seconds = {s: db_seconds.labels(p, s) for s in _STATEMENTS}
        self._state = _StateCollector(p)
        r.register(self._state)

    # -- what the lobby reports -----------------------------------------------------------

    def received(self, msg_type: MessageType) -> None:
        """One client message of ``msg_type`` was decoded."""
        self._received[msg_type].inc()

    def sent(self, msg_type: MessageType, count: int) -> None:
        """A message of ``msg_type`` was queued to ``count`` clients."""
        if count:
            self._sent[msg_type].inc(count)

    def ws_closed(self, code: int | None) -> None:
        self._closes.get(code or 1006, self._close_other).inc()

    def slow_consumer_cut(self) -> None:
        self._slow.inc()

    def rate_limited(self, scope: RateScope) -> None:
        self._limited[scope].inc()

    def login(self, result: LoginResult) -> None:
        self._logins[result].inc()

    @contextlib.contextmanager
    def hashing(self, op: HashOp) -> Iterator[None]:
        """Around one password hash or verify: queue depth while inside, time when done."""
        self._hash_queue.inc()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._hash_queue.dec()
            self._hash_seconds[op].observe(time.perf_counter() - start)

    def relayed(self, payload_bytes: int) -> None:
        self._relayed.inc()
        self._relayed_bytes.inc(payload_bytes)

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        """One REST request answered (``route`` is a template or :data:`UNMATCHED_ROUTE`)."""
        key = (method, route)
        child = self._http_children.get(key)
        if child is None:
            child = self._http_children[key] = self._http_seconds.labels(self.process, *key)
        child.observe(seconds)
        skey = (method, route, status)
        counter = self._status_children.get(skey)
        if counter is None:
            counter = self._status_children[skey] = self._http_responses.labels(
                self.process, method, route, str(status)
            )
        counter.inc()

    # -- wiring ---------------------------------------------------------------------------

    def watch(self, hub: Hub, world: WorldDefinition) -> None:
        """Report connections and players per location from ``hub`` at scrape time."""
        self._state.hub = hub
        self._state.locations = [(loc.id, loc.name) for loc in world.locations]

    def instrument(self, engine: AsyncEngine) -> Callable[[], None]:
        """Time every statement ``engine`` runs; returns the function that stops it."""
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", _before_execute)
        event.listen(sync, "after_cursor_execute", self._after_execute)

        def stop() -> None:
            event.remove(sync, "before_cursor_execute", _before_execute)
            event.remove(sync, "after_cursor_execute", self._after_execute)

        return stop

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def _after_execute(
        self, _conn: Any, _cursor: Any, statement: str, _p: Any, context: Any, _many: bool
    ) -> None:
        start = getattr(context, _QUERY_START, None)
        if start is None:
            return
        kind = statement.lstrip()[:6].lower()
        self._db_seconds.get(kind, self._db_seconds["other"]).observe(time.perf_counter() - start)


def metrics_handler(metrics: LobbyMetrics) -> Callable[[web.Request], Any]:
    """An aiohttp handler answering ``metrics``' text exposition."""

    async def handle(_request: web.Request) -> web.Response:
        body = metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


def _before_execute(
    _conn: Any, _cursor: Any, _statement: str, _p: Any, context: Any, _many: bool
) -> None:
    if context is not None:  # None for a statement without an execution context (DDL)
        setattr(context, _QUERY_START, time.perf_counter())


class _StateCollector(Collector):
    """Gauges read from the hub when Prometheus scrapes (nothing to keep in step)."""

    def __init__(self, process: str) -> None:
        self.process = process
        self.hub: Hub | None = None
        self.locations: list[tuple[int, str]] = []

    def describe(self) -> Iterable[Metric]:
        return [
            GaugeMetricFamily(f"{PREFIX}_connections", "Open WebSockets", labels=["process"]),
            GaugeMetricFamily(
                f"{PREFIX}_players_online",
                "Players with a character online or inside the reconnect grace, by location",
                labels=["process", "location_id", "location"],
            ),
        ]

    def collect(self) -> Iterable[Metric]:
        connections, players = self.describe()
        counts: dict[int, int] = {}
        open_conns = 0
        if self.hub is not None:
            open_conns = len(self.hub.connections())
            for presence in self.hub.presences():
                if presence.character is not None:
                    loc = presence.character.location_id
                    counts[loc] = counts.get(loc, 0) + 1
        assert isinstance(connections, GaugeMetricFamily)  # noqa: S101
        assert isinstance(players, GaugeMetricFamily)  # noqa: S101
        connections.add_metric([self.process], open_conns)
        for loc_id, name in self.locations:
            players.add_metric([self.process, str(loc_id), name], counts.pop(loc_id, 0))
        for loc_id, n in counts.items():  # a location the world file no longer has
            players.add_metric([self.process, str(loc_id), ""], n)
        return [connections, players]
