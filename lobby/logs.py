"""Request observation: route templates, latency metrics (and, below, the access log).

:func:`request_middleware` is the outermost aiohttp middleware of a lobby: it
times every request and reports it to :class:`~lobby.metrics.LobbyMetrics` under
its route template (never the raw path). WebSocket upgrades (status 101) are
not timed: their "latency" is the life of the socket.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from lobby.metrics import UNMATCHED_ROUTE, LobbyMetrics

__all__ = ["request_middleware", "route_of"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_of(request: web.Request) -> tuple[str, str]:
    """``(method, route template)`` of a routed request, ``("-", "(unmatched)")`` otherwise."""
    info = request.match_info
    resource = None if info.http_exception is not None else info.route.resource
    if resource is None:
        return "-", UNMATCHED_ROUTE
    return request.method, resource.canonical


def request_middleware(metrics: LobbyMetrics) -> Middleware:
    """Time each request and count its answer in ``metrics``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            if status != 101:
                method, route = route_of(request)
                metrics.request_done(method, route, status, time.perf_counter() - start)

    return middleware
