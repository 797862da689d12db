"""The lobby's HTTP front door: the limits aiohttp's server does not apply by itself.

aiohttp 3.14 closes a connection idle for ``keepalive_timeout`` (also one that never
sends a request; the lobby passes ``http_keepalive_timeout``) and bounds header sizes.
It does not bound how long a request's headers may take to trickle in nor how many
connections one address holds; it keeps a refused WebSocket upgrade's socket open and
logs every malformed request with a full traceback. :class:`ConnectionGuard` adds:

* **a header deadline**: a request's line and headers must be complete (the request
  reaches the application) within ``http_header_timeout`` seconds of its first byte,
  else the connection is closed (slowloris). Deadlines are kept in arrival order
  (they all run as long), so one timer serves every connection: it wakes at the
  earliest one, at most every 1/16 of the timeout, and a request costs a dict entry
  rather than a timer of its own;
* **a per-address cap**: at most ``http_max_connections_per_address`` open TCP
  connections (WebSockets included) per peer address; the next one is answered
  ``429`` (JSON ``rate_limited``, ``details.scope = "connections"``, ``Retry-After``)
  and closed before anything is read from it;
* **closing after a refused upgrade**: any answer but 101 to a request asking for
  ``Upgrade`` carries ``Connection: close`` and the socket is closed after it;
* **one short line per malformed request**, rate-limited (:class:`GuardLog`): no
  traceback, and at most ``LOG_BURST`` lines plus ``LOG_RATE`` a second, however
  many arrive; what was dropped is counted in the next line that gets through.

It sits between the listening socket and aiohttp's protocol (:class:`GuardedSite`
creates the server with the guard's protocol factory) and in front of the
application (:meth:`ConnectionGuard.middleware`, the outermost middleware). Memory
is bounded by the open connections: one counter per address with a connection open.
(A request body has its own deadline, ``http_body_timeout``, in :mod:`lobby.http.api`.)
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

from lobby.config import Clock
from lobby.ratelimit import RateLimiter
from protocol.errors import ErrorCode

__all__ = ["LOG_BURST", "LOG_RATE", "ConnectionGuard", "GuardLog", "GuardedSite"]

log = logging.getLogger("lobby.http")

LOG_BURST = 20
"""Guard lines (malformed requests, timeouts, refusals) logged back to back at most."""
LOG_RATE = 1.0
"""Guard lines per second once the burst is spent."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GuardLog(logging.LoggerAdapter[logging.Logger]):
    """The guard's log, and aiohttp's server logger (``logger=`` of the runner).

    A record carrying an :class:`~aiohttp.http_exceptions.HttpProcessingError`
    (a request that does not parse: a NUL in a header, a bad request line, a line
    over the size limit) becomes one line ``malformed HTTP request from <addr>:
    <reason>`` at INFO (DEBUG where aiohttp chose DEBUG: non-HTTP bytes as a first
    request), printable characters only, without a traceback. Those
    lines and :meth:`notice` lines share one token bucket (``LOG_BURST``,
    ``LOG_RATE`` on the lobby clock). Every other record passes unchanged.
    """

    def __init__(self, logger: logging.Logger, clock: Clock) -> None:
        super().__init__(logger, {})
        self._bucket = RateLimiter(LOG_RATE, LOG_BURST, clock, max_keys=1)
        self.dropped = 0
        """Lines not logged since the last one that was."""

    def notice(self, msg: str, *args: object, level: int = logging.INFO) -> None:
        """Log one rate-limited line (nothing is counted while ``level`` is not logged)."""
        if not self.logger.isEnabledFor(level):
            return
        if self._bucket.hit("guard") > 0:
            self.dropped += 1
            return
        if self.dropped:
            msg += " (%d similar lines not logged)"
            args = (*args, self.dropped)
            self.dropped = 0
        self.logger.log(level, msg, *args)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = _exception(kwargs.get("exc_info"))
        if isinstance(exc, HttpProcessingError):
            remote = args[0] if args else "unknown"
            # a client's garbage is no server error: INFO at most (aiohttp's DEBUG stays DEBUG)
            level = min(level, logging.INFO)
            self.notice("malformed HTTP request from %s: %s", remote, _one_line(exc), level=level)
            return
        super().log(level, msg, *args, **kwargs)


class _Phase(enum.Enum):
    IDLE = "idle"
    """Between requests (or before the first): aiohttp's keep-alive timer runs."""
    HEADERS = "headers"
    """A request's first bytes arrived: the header deadline runs."""
    HANDLING = "handling"
    """The application has the request (a WebSocket stays here while it is open)."""


class _GuardedProtocol(asyncio.Protocol):
    """One TCP connection: counts towards its address and delegates to aiohttp's protocol."""

    __slots__ = ("_address", "_guard", "_inner", "_make_inner", "_phase", "_transport")

    def __init__(self, guard: ConnectionGuard, make_inner: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make_inner = make_inner
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._address = "unknown"
        self._phase = _Phase.IDLE

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream server's transport (uvloop's is not an asyncio.Transport subclass)
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self._guard._admit(self._address):
            self._guard._refuse(transport, self._address)
            return
        self._inner = self._make_inner()
        self._guard._connections[self._inner] = self
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is None:
            return
        if self._phase is _Phase.IDLE and data:
            self._phase = _Phase.HEADERS
            self._guard._headers_started(self)
        inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._inner is None else self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard._headers_over(self)
        inner, self._inner = self._inner, None
        if inner is None:
            return
        self._guard._connections.pop(inner, None)
        self._guard._release(self._address)
        inner.connection_lost(exc)

    # -- request phases (from the middleware) ---------------------------------------------

    def headers_done(self) -> None:
        self._guard._headers_over(self)
        self._phase = _Phase.HANDLING

    def request_done(self) -> None:
        if self._phase is _Phase.HANDLING:
            self._phase = _Phase.IDLE

    def _headers_late(self) -> None:
        if self._phase is _Phase.HEADERS and self._transport is not None:
            self._guard.log.notice(
                "closed a connection from %s: request headers not complete within %ss",
                self._address,
                self._guard.header_timeout,
            )
            self._transport.close()


class ConnectionGuard:
    """Per-address connection counts, header deadlines and upgrade refusals of one lobby."""

    def __init__(
        self,
        *,
        header_timeout: float,
        max_per_address: int,
        clock: Clock,
        logger: logging.Logger = log,
    ) -> None:
        self.header_timeout = header_timeout
        self.max_per_address = max_per_address
        self.log = GuardLog(logger, clock)
        """Pass as ``logger=`` to aiohttp's runner (malformed requests: one line each)."""
        self.refused = 0
        """Connections refused by the per-address cap since start."""
        self._per_address: dict[str, int] = {}
        self._connections: dict[asyncio.Protocol, _GuardedProtocol] = {}
        self._deadlines: dict[_GuardedProtocol, float] = {}
        """Connections whose headers are coming in -> their deadline (loop time), earliest
        first: every deadline is its start + the same timeout, and loop time only grows."""
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open_connections(self, address: str) -> int:
        """Connections open from ``address`` now."""
        return self._per_address.get(address, 0)

    def protocol_factory(self, make_inner: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        """A guarded protocol for one new connection (``make_inner``: aiohttp's server)."""
        return _GuardedProtocol(self, make_inner)

    def middleware(self) -> Middleware:
        """The outermost middleware: header deadline bookkeeping, close after refused upgrades."""

        @web.middleware
        async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
            conn = self._connections.get(request.protocol)
            if conn is not None:
                conn.headers_done()
            try:
                response = await handler(request)
            finally:
                if conn is not None:
                    conn.request_done()
            if response.status != 101 and hdrs.UPGRADE in request.headers:
                # Whatever follows a refused upgrade's headers (frames?) is not HTTP.
                response.force_close()
            return response

        return guard

    def _headers_started(self, conn: _GuardedProtocol) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + self.header_timeout
        self._deadlines.pop(conn, None)  # (not there: a request's headers end before the next)
        self._deadlines[conn] = deadline
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._headers_due)

    def _headers_over(self, conn: _GuardedProtocol) -> None:
        self._deadlines.pop(conn, None)

    def _headers_due(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None  # noqa: S101 - armed by _headers_started
        now = loop.time()
        deadlines = self._deadlines
        while deadlines:
            conn, deadline = next(iter(deadlines.items()))
            if deadline > now:
                # coalesce: wake at most every 1/16 of the timeout however many are due
                wake = max(deadline, now + self.header_timeout / 16)
                self._timer = loop.call_at(wake, self._headers_due)
                return
            del deadlines[conn]
            conn._headers_late()

    def _admit(self, address: str) -> bool:
        count = self._per_address.get(address, 0)
        if self.max_per_address and count >= self.max_per_address:
            return False
        self._per_address[address] = count + 1
        return True

    def _release(self, address: str) -> None:
        count = self._per_address.get(address, 0) - 1
        if count > 0:
            self._per_address[address] = count
        else:
            self._per_address.pop(address, None)

    def _refuse(self, transport: asyncio.Transport, address: str) -> None:
        self.refused += 1
        self.log.notice(
            "refused a connection from %s: %d open (http_max_connections_per_address)",
            address,
            self.max_per_address,
        )
        body = json.dumps(
            {
                "code": ErrorCode.RATE_LIMITED.value,
                "message": "too many connections from this address",
                "details": {
                    "scope": "connections",
                    "limit": self.max_per_address,
                    "retry_after": 1,
                },
            }
        ).encode()
        head = (
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        ).encode()
        transport.write(head + body)
        transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site of ``runner`` whose connections go through ``guard``.

    Like :class:`aiohttp.web.TCPSite` (``runner.addresses`` lists it, ``runner.cleanup()``
    stops it), with ``host``/``port`` or an already bound ``sock``.
    """

    __slots__ = ("_guard", "_host", "_port", "_sock")

    def __init__(
        self,
        runner: web.BaseRunner,
        guard: ConnectionGuard,
        host: str | None = None,
        port: int = 0,
        *,
        sock: Any = None,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._guard = guard
        self._host = host
        self._port = port
        self._sock = sock

    @property
    def name(self) -> str:
        return f"http://{self._host or '0.0.0.0'}:{self._port}"  # noqa: S104 - a name only

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # noqa: S101 - runner.setup() ran (BaseSite checks it)
        guard = self._guard

        def factory() -> asyncio.Protocol:
            return guard.protocol_factory(server)

        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(factory, sock=self._sock, backlog=self._backlog)
        else:
            self._server = await loop.create_server(
                factory, self._host, self._port, backlog=self._backlog
            )


def _exception(exc_info: object) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        value = exc_info[1]
        return value if isinstance(value, BaseException) else None
    if exc_info is True:
        return sys.exc_info()[1]
    return None


def _one_line(exc: HttpProcessingError) -> str:
    """The parse error's reason on one line of printable characters, at most 160 long."""
    text = " ".join(f"{type(exc).__name__}: {exc.message}".split())
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 160 else text[:157] + "..."
