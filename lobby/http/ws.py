"""``GET /ws``: the WebSocket endpoint (authentication, the read loop, limits).

Authentication happens before the upgrade: ``Authorization: Bearer <token>``
or ``?token=<token>``; a missing, revoked or expired session gets the JSON 401
of every other endpoint and no socket. A ``GET /ws`` that is not a WebSocket
upgrade is answered 400 ``bad_request``; too many connections of the account,
429 ``rate_limited``. A refused upgrade's connection is closed after the answer
(:mod:`lobby.http.guard`). The read loop handles one client
message at a time, in order:

1. frames over ``ws_hard_max_message_size`` are refused by aiohttp (close 1009);
   frames over ``ws_max_message_size`` get ``ERROR message_too_large``;
2. rate limit per connection and per account (``ws_message_rate`` /
   ``ws_message_burst``, twice that per account) and per source address
   (``ws_address_message_rate``): ``ERROR rate_limited`` with ``details.retry_after``;
   after ``ws_flood_strikes`` limited messages in a row, close 1008;
3. decode (``protocol.codec.deserialize``): ``ERROR`` with the protocol's code
   (``invalid_json``, ``invalid_message``, ``unknown_type``, ``version_mismatch``)
   whose ``ref_id`` is the frame's ``message_id`` when its JSON has a usable one;
4. slide the session's expiry; ``HEARTBEAT`` is answered with a ``HEARTBEAT``
   whose ``reply_to`` is the client's ``message_id``; ``DISCONNECT`` closes with
   1000 and leaves at once (no reconnect grace); any other type goes to the
   hub's dispatcher, and a :class:`ShardsError` from a handler becomes an
   ``ERROR`` with ``ref_id`` = the message's id.

No frame from the client (a message, a ping or a pong to the server's heartbeat
ping) for ``ws_idle_timeout`` seconds closes with 1000, within an eighth of the
timeout more: one timer watches every connection's last frame, rather than a
timer per socket re-armed by every frame. The connection stays up after every
ERROR.

A refused upgrade is found before anything else with the checks aiohttp's
handshake makes (``Upgrade: websocket``, ``Connection: upgrade``, a supported
``Sec-WebSocket-Version``, a 16-byte ``Sec-WebSocket-Key``), so the handshake
itself runs once, when the socket is prepared.

Resume cursors (``?cursor=``, :mod:`protocol.resume`): with the parameter each
push carries its cursor; with a cursor as its value the session is replayed what
it missed after it (:meth:`lobby.hub.Hub.attach`). A value that is not a cursor
is answered HTTP 400 ``bad_request`` before the upgrade.

Frame encodings (``?encoding=``, listed as ``ws_encodings`` in ``/api/status``):

* ``json`` (the default): each text frame is the JSON text itself;
* ``fernet`` (only with the ``ws_fernet_secret`` setting): each text frame in
  both directions is one Fernet token (ASCII) whose plaintext is exactly the
  JSON frame text (one object or a batch array). The key is
  ``derive_fernet_key(secret, WS_FERNET_SALT)``, derived once when the lobby
  starts, in a worker thread. Incoming tokens are opened (after the rate limit)
  with ``ttl=ws_fernet_ttl``; a frame that does not open (wrong key, altered,
  expired, not a token) closes the socket with 1008, since an ERROR would be
  unreadable to a client without the key. A lobby without the setting answers
  ``?encoding=fernet`` (or any unknown encoding) with HTTP 400 ``bad_request``
  before the upgrade.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
from base64 import b64decode
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, hdrs, web

from lobby.connection import (
    CLOSE_FLOOD,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    Connection,
    FernetFrames,
    WriteFlusher,
)
from lobby.http.api import bearer_token
from lobby.http.errors import client_address
from lobby.logs import bind, bind_session
from lobby.presence import CharacterInfo
from lobby.ratelimit import RateLimiter, SharedRateLimiter, hit_each
from protocol.codec import deserialize, error_message_from
from protocol.crypto import WS_FERNET_SALT, FernetSealer, derive_fernet_key
from protocol.errors import ErrorCode, LobbyError, ProtocolError, SealError, ShardsError
from protocol.messages import HeartbeatMessage, MessageType
from protocol.resume import RESUME_CURSOR_PARAM, CursorKey, cursor_key

if TYPE_CHECKING:
    from lobby.config import LobbySettings
    from lobby.context import LobbyContext

__all__ = ["ENCODING_PARAM", "WebSocketEndpoint", "ws_encodings"]

log = logging.getLogger("lobby.hub")

ENCODING_PARAM = "encoding"
"""Query parameter choosing the frame encoding (``json`` or ``fernet``)."""


def ws_encodings(settings: LobbySettings) -> list[str]:
    """The frame encodings a lobby with ``settings`` offers (``ws_encodings`` in the status)."""
    return ["json", "fernet"] if settings.ws_fernet_secret is not None else ["json"]


def _resume_cursor(request: web.Request) -> tuple[bool, CursorKey | None]:
    """``?cursor=``: whether the client wants resume cursors, and the one it resumes
    from (HTTP 400 ``bad_request`` if it is not a cursor)."""
    text = request.query.get(RESUME_CURSOR_PARAM)
    if text is None:
        return False, None
    if not text:
        return True, None
    return True, cursor_key(text)


def _fernet_sealer(secret: str) -> FernetSealer:
    return FernetSealer(derive_fernet_key(secret, WS_FERNET_SALT))


def _is_upgrade(request: web.Request) -> bool:
    """Whether aiohttp's WebSocket handshake would accept ``request`` (without running it)."""
    headers = request.headers
    if headers.get(hdrs.UPGRADE, "").strip().lower() != "websocket":
        return False
    connection = headers.get(hdrs.CONNECTION, "").lower()
    if "upgrade" not in (token.strip() for token in connection.split(",")):
        return False
    if headers.get(hdrs.SEC_WEBSOCKET_VERSION, "") not in ("13", "8", "7"):
        return False
    key = headers.get(hdrs.SEC_WEBSOCKET_KEY, "")
    try:
        return len(b64decode(key)) == 16
    except binascii.Error:
        return False


class _IdleSweep:
    """Closes connections that sent nothing for ``timeout`` seconds, with one timer for all.

    Each connection stamps :attr:`Connection.last_heard` (loop time) on every frame; the
    timer wakes at the earliest deadline, but at most every ``timeout / 8`` seconds, and is
    armed only while connections are registered.
    """

    __slots__ = ("_conns", "_granule", "_loop", "_timeout", "_timer")

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._granule = timeout / 8
        self._conns: dict[Connection, None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def add(self, conn: Connection) -> None:
        self._conns[conn] = None
        if self._timer is None:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._arm(conn.last_heard + self._timeout)

    def discard(self, conn: Connection) -> None:
        self._conns.pop(conn, None)
        if not self._conns and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float) -> None:
        assert self._loop is not None  # noqa: S101 - set by the first add()
        when = max(when, self._loop.time() + self._granule)
        self._timer = self._loop.call_at(when, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        assert self._loop is not None  # noqa: S101 - armed by add()
        cutoff = self._loop.time() - self._timeout
        earliest: float | None = None
        for conn in list(self._conns):
            heard = conn.last_heard
            if heard <= cutoff:
                del self._conns[conn]
                conn.close(CLOSE_NORMAL, "idle timeout")
            elif earliest is None or heard < earliest:
                earliest = heard
        if earliest is not None:
            self._arm(earliest + self._timeout)


class WebSocketEndpoint:
    """The aiohttp handler of ``/ws`` for one lobby (create it inside the running loop)."""

    def __init__(self, ctx: LobbyContext) -> None:
        self.ctx = ctx
        s = ctx.settings
        self.encodings = ws_encodings(s)
        self._flusher = WriteFlusher()
        self._sealer: FernetSealer | None = None
        self._sealer_ready: asyncio.Future[FernetSealer] | None = None
        if s.ws_fernet_secret is not None:
            # PBKDF2 with 100,000 iterations: once, in a worker thread, not per connection
            self._sealer_ready = asyncio.get_running_loop().run_in_executor(
                None, _fernet_sealer, s.ws_fernet_secret.get_secret_value()
            )
            self._sealer_ready.add_done_callback(self._keyed)
        self._idle = _IdleSweep(s.ws_idle_timeout)
        self._conn_limiter = RateLimiter(s.ws_message_rate, s.ws_message_burst, ctx.clock)
        # an account's and an address's budgets are the cluster's (one Redis round trip)
        self._account_limiter = SharedRateLimiter(
            "ws_account", s.ws_message_rate * 2, s.ws_message_burst * 2, ctx.clock, ctx.buckets
        )
        self._address_limiter = SharedRateLimiter(
            "ws_address",
            s.ws_address_message_rate,
            s.ws_address_message_burst,
            ctx.clock,
            ctx.buckets,
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = self.ctx
        s = ctx.settings
        if not _is_upgrade(request):
            raise LobbyError(
                "GET /ws is a WebSocket upgrade (Upgrade: websocket, Sec-WebSocket-Key, "
                "Sec-WebSocket-Version: 13)",
                code=ErrorCode.BAD_REQUEST,
            )
        frames = await self._frames(request)
        stamps, after = _resume_cursor(request)
        session = await ctx.sessions.authenticate(bearer_token(request, allow_query=True))
        bind_session(session)  # its ids on this socket's log lines
        if ctx.hub.connections_of_account(session.account_id) >= s.ws_connections_per_account:
            raise LobbyError(
                "too many WebSocket connections for this account",
                code=ErrorCode.RATE_LIMITED,
                details={"limit": s.ws_connections_per_account, "retry_after": 1},
            )
        character = None
        if session.character_id is not None:
            row = await ctx.characters.get(session.character_id)
            if row is not None and row.account_id == session.account_id:
                character = CharacterInfo(row.id, row.name, row.faction, row.location_id, row.level)
        ws = web.WebSocketResponse(
            autoping=False,  # the read loop answers pings: every frame counts as heard
            heartbeat=s.ws_heartbeat,
            max_msg_size=s.ws_hard_max_message_size,
            compress=s.ws_compress,
            timeout=s.ws_close_timeout,
        )
        await ws.prepare(request)
        address = client_address(request, trust_forwarded_for=s.trust_forwarded_for)
        conn = Connection(ws, request, session, ctx, address, frames, self._flusher)
        bind(conn_id=conn.id)
        conn.start()
        self._idle.add(conn)
        resumed = await ctx.hub.attach(conn, character, stamps=stamps, after=after)
        if log.isEnabledFor(logging.DEBUG):  # describe() formats: not for every connect
            log.debug(
                "%s connected from %s (resumed=%s, encoding=%s)",
                conn.describe(),
                address,
                resumed,
                "json" if frames is None else frames.name,
            )
        try:
            await self._read_loop(conn)
        finally:
            self._idle.discard(conn)
            self._conn_limiter.reset(conn.id)
            await ctx.hub.detach(conn)
            if conn.close_code is None:
                conn.close(ws.close_code or CLOSE_NORMAL, "closed")
            await conn.wait_closed()
            ctx.metrics.ws_closed(conn.close_code)
            conn.finished.set()
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s closed (%s %s)", conn.describe(), conn.close_code, conn.close_reason)
        return ws

    def _keyed(self, ready: asyncio.Future[FernetSealer]) -> None:
        if ready.cancelled():
            return
        exc = ready.exception()
        if exc is not None:
            log.error("the Fernet WebSocket key could not be derived (%s)", type(exc).__name__)
            return
        self._sealer = ready.result()

    async def _frames(self, request: web.Request) -> FernetFrames | None:
        """The encoding asked for with ``?encoding=`` (HTTP 400 if not offered)."""
        encoding = request.query.get(ENCODING_PARAM, "json")
        if encoding == "json":
            return None
        if encoding != "fernet" or self._sealer_ready is None:
            what = "fernet" if encoding == "fernet" else repr(encoding[:32])
            raise LobbyError(
                f"this lobby does not offer the {what} WebSocket encoding "
                f"(offered: {', '.join(self.encodings)}; see ws_encodings in /api/status)",
                code=ErrorCode.BAD_REQUEST,
                details={"encoding": encoding[:32], "offered": list(self.encodings)},
            )
        sealer = self._sealer
        if sealer is None:  # only while the lobby is still deriving the key
            sealer = await asyncio.shield(self._sealer_ready)
        return FernetFrames(sealer, self.ctx.clock, self.ctx.settings.ws_fernet_ttl)

    async def _read_loop(self, conn: Connection) -> None:
        ws = conn.ws
        clock = asyncio.get_running_loop().time
        while conn.close_code is None:
            msg = await ws.receive()
            conn.last_heard = clock()
            if msg.type == WSMsgType.TEXT:
                await self._on_text(conn, msg.data)
            elif msg.type == WSMsgType.BINARY:
                conn.send(
                    error_message_from(
                        ProtocolError(
                            "binary frames are not accepted: send JSON text",
                            code=ErrorCode.INVALID_MESSAGE,
                        )
                    )
                )
            elif msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type == WSMsgType.PONG:
                pass  # an answer to aiohttp's heartbeat ping: the client is there
            else:  # CLOSE, CLOSING, CLOSED, ERROR (e.g. a frame over the hard limit)
                if msg.type == WSMsgType.CLOSE and msg.data == CLOSE_NORMAL:
                    conn.deliberate_leave = True
                return

    async def _on_text(self, conn: Connection, data: str) -> None:
        ctx = self.ctx
        wait = max(
            self._conn_limiter.hit(conn.id),
            await hit_each(
                [(self._account_limiter, conn.account_id), (self._address_limiter, conn.address)]
            ),
        )
        if wait > 0:
            ctx.metrics.rate_limited("ws_message")
            conn.flood_strikes += 1
            if conn.flood_strikes > ctx.settings.ws_flood_strikes:
                log.warning("%s closed for flooding", conn.describe())
                conn.close(CLOSE_FLOOD, "flooding: too many messages")
                return
            conn.send(
                error_message_from(
                    LobbyError(
                        "too many messages: slow down",
                        code=ErrorCode.RATE_LIMITED,
                        details={"retry_after": round(wait, 3)},
                    )
                )
            )
            return
        conn.flood_strikes = 0
        if conn.frames is not None:
            try:
                data = conn.frames.open(data)
            except SealError:
                log.info("%s closed: a frame did not open with the Fernet key", conn.describe())
                conn.close(CLOSE_POLICY, "frame is not a Fernet token of this lobby's key")
                return
            except ProtocolError as exc:
                conn.send(error_message_from(exc))
                return
        try:
            msg = deserialize(data, max_size=ctx.settings.ws_max_message_size)
        except ProtocolError as exc:
            ref_id = _raw_message_id(data, ctx.settings.ws_max_message_size)
            conn.send(error_message_from(exc, ref_id=ref_id))
            return
        ctx.metrics.received(msg.type)
        try:
            conn.session = await ctx.sessions.touch(conn.session)
        except LobbyError:
            conn.close(CLOSE_POLICY, "session revoked")
            return
        try:
            if ctx.hub.handler_for(msg.type) is None:
                if msg.type == MessageType.HEARTBEAT:
                    conn.send(HeartbeatMessage(sent_at=ctx.clock(), reply_to=msg.message_id))
                    return
                if msg.type == MessageType.DISCONNECT:
                    conn.deliberate_leave = True
                    conn.close(CLOSE_NORMAL, "disconnect")
                    return
            await ctx.hub.dispatch(conn, msg)
        except ShardsError as exc:
            if exc.code is ErrorCode.RATE_LIMITED:
                ctx.metrics.rate_limited("ws_handler")
            conn.send(error_message_from(exc, ref_id=msg.message_id))
        except Exception:
            log.exception("%s handler for %s failed", conn.describe(), msg.type)
            conn.send(
                error_message_from(
                    LobbyError("internal error", code=ErrorCode.INTERNAL_ERROR),
                    ref_id=msg.message_id,
                )
            )


def _raw_message_id(data: str, max_size: int) -> str | None:
    """The ``message_id`` of a frame that failed validation, if its JSON has a string one.

    Lets the ``ERROR`` name the request it answers (``ref_id``); frames over the size
    limit or not a JSON object have none (``error_message_from`` drops unusable ids).
    """
    if len(data) > max_size:
        return None
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return None
    value = raw.get("message_id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None
