"""Lobby logging: per-request ids on every line, an access log, text or JSON output.

Ids. :func:`request_middleware` (the outermost aiohttp middleware) gives each
request a :class:`LogIds` in a context variable: ``request_id`` (the client's
``X-Request-Id`` when it is a short token, else a new random one; echoed in the
answer's ``X-Request-Id``), then ``session_id`` / ``account_id`` / ``peer_id``
once the request authenticates (:func:`bind_session`, called by the REST
wrapper and the WebSocket endpoint) and ``conn_id`` for a WebSocket. Everything
logged while serving that request, including from tasks it starts (a
connection's writer), carries them: :class:`IdsFilter` copies them onto each
record, where both formatters find them.

Access log. One INFO line per request on the ``lobby.access`` logger when the
answer is done: ``METHOD ROUTE STATUS MS account=ID`` with the route *template*
(``/api/characters/{character_id}``; ``(unmatched)`` for no route), never the
raw path or query string, so a ``?token=`` never reaches a log. A WebSocket's
line comes when it closes (status 101, its lifetime in ms).

Formats: :mod:`protocol.logformat` (``text`` or ``json``, shared with ``python -m
mesh``); :func:`configure` installs one with :class:`IdsFilter` (``python -m lobby
--log-format``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import IO, Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from lobby.metrics import UNMATCHED_ROUTE, LobbyMetrics
from lobby.sessions import Session
from protocol import logformat
from protocol.logformat import ID_FIELDS, LogFormat

__all__ = [
    "ACCESS_LOGGER",
    "IdsFilter",
    "LogIds",
    "bind",
    "bind_session",
    "configure",
    "current_ids",
    "request_middleware",
    "route_of",
]

ACCESS_LOGGER = "lobby.access"
REQUEST_ID_HEADER = "X-Request-Id"

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

access_log = logging.getLogger(ACCESS_LOGGER)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class LogIds:
    """The ids of what is being served (None: not known / not applicable)."""

    request_id: str | None = None
    session_id: int | None = None
    account_id: int | None = None
    conn_id: int | None = None
    peer_id: str | None = None


_current: contextvars.ContextVar[LogIds | None] = contextvars.ContextVar(
    "lobby_log_ids", default=None
)


def current_ids() -> LogIds | None:
    return _current.get()


def bind(**ids: Any) -> None:
    """Set ids on the current request's :class:`LogIds` (a new one outside a request)."""
    current = _current.get()
    if current is None:
        current = LogIds()
        _current.set(current)
    for name, value in ids.items():
        setattr(current, name, value)


def bind_session(session: Session) -> None:
    """The request authenticated as ``session``: its session, account and peer ids."""
    peer = session.peer_info.get("peer_id") if session.peer_info else None
    bind(session_id=session.id, account_id=session.account_id, peer_id=peer)


def route_of(request: web.Request) -> tuple[str, str]:
    """``(method, route template)`` of a routed request, ``("-", "(unmatched)")`` otherwise."""
    info = request.match_info
    resource = None if info.http_exception is not None else info.route.resource
    if resource is None:
        return "-", UNMATCHED_ROUTE
    return request.method, resource.canonical


def request_middleware(metrics: LobbyMetrics) -> Middleware:
    """Ids for the request's log lines, then its access line and metrics when answered.

    WebSocket upgrades (status 101) are logged but not timed in the latency
    histogram: their "latency" is the life of the socket.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        claimed = request.headers.get(REQUEST_ID_HEADER, "")
        ids = LogIds(request_id=claimed if _CLIENT_ID.match(claimed) else secrets.token_hex(8))
        token = _current.set(ids)
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if not response.prepared:
                response.headers[REQUEST_ID_HEADER] = ids.request_id or ""
            return response
        except web.HTTPException as exc:  # a redirect (errors are answered further in)
            status = exc.status
            raise
        except asyncio.CancelledError:  # the client went away before the answer
            status = 499
            raise
        finally:
            elapsed = time.perf_counter() - start
            method, route = route_of(request)
            if status != 101:
                metrics.request_done(method, route, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                ms = round(elapsed * 1000, 1)
                account = "-" if ids.account_id is None else ids.account_id
                access_log.info(
                    "%s %s %d %.1fms account=%s",
                    request.method,
                    route,
                    status,
                    ms,
                    account,
                    extra={"method": request.method, "route": route, "status": status, "ms": ms},
                )
            _current.reset(token)

    return middleware


class IdsFilter(logging.Filter):
    """Copies the current :class:`LogIds` onto each record (``record.request_id``, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _current.get()
        for name in ID_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, None if ids is None else getattr(ids, name))
        return True


def configure(level: str | int, fmt: LogFormat = "text", stream: IO[str] | None = None) -> None:
    """Every log line to ``stream`` (stderr) in ``fmt`` (:mod:`protocol.logformat`), with ids."""
    logformat.configure(level, fmt, IdsFilter(), stream)
