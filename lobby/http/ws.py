"""``GET /ws``: the WebSocket endpoint (authentication, the read loop, limits).

Authentication happens before the upgrade: ``Authorization: Bearer <token>``
or ``?token=<token>``; a missing, revoked or expired session gets the JSON 401
of every other endpoint and no socket. The read loop handles one client
message at a time, in order:

1. frames over ``ws_hard_max_message_size`` are refused by aiohttp (close 1009);
   frames over ``ws_max_message_size`` get ``ERROR message_too_large``;
2. rate limit per connection and per account (``ws_message_rate`` /
   ``ws_message_burst``, twice that per account) and per source address
   (``ws_address_message_rate``): ``ERROR rate_limited`` with ``details.retry_after``;
   after ``ws_flood_strikes`` limited messages in a row, close 1008;
3. decode (``protocol.codec.deserialize``): ``ERROR`` with the protocol's code
   (``invalid_json``, ``invalid_message``, ``unknown_type``, ``version_mismatch``);
4. slide the session's expiry; ``HEARTBEAT`` is answered with a ``HEARTBEAT``
   whose ``reply_to`` is the client's ``message_id``; ``DISCONNECT`` closes with
   1000 and leaves at once (no reconnect grace); any other type goes to the
   hub's dispatcher, and a :class:`ShardsError` from a handler becomes an
   ``ERROR`` with ``ref_id`` = the message's id.

No client message for ``ws_idle_timeout`` seconds closes with 1000. The
connection stays up after every ERROR.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from lobby.connection import CLOSE_FLOOD, CLOSE_NORMAL, CLOSE_POLICY, Connection
from lobby.http.api import bearer_token
from lobby.http.errors import client_address
from lobby.hub import CharacterInfo
from lobby.ratelimit import RateLimiter
from protocol.codec import deserialize, error_message_from
from protocol.errors import ErrorCode, LobbyError, ProtocolError, ShardsError
from protocol.messages import HeartbeatMessage, MessageType

if TYPE_CHECKING:
    from lobby.context import LobbyContext

__all__ = ["WebSocketEndpoint"]

log = logging.getLogger("lobby.hub")


class WebSocketEndpoint:
    """The aiohttp handler of ``/ws`` for one lobby."""

    def __init__(self, ctx: LobbyContext) -> None:
        self.ctx = ctx
        s = ctx.settings
        self._conn_limiter = RateLimiter(s.ws_message_rate, s.ws_message_burst, ctx.clock)
        self._account_limiter = RateLimiter(
            s.ws_message_rate * 2, s.ws_message_burst * 2, ctx.clock
        )
        self._address_limiter = RateLimiter(
            s.ws_address_message_rate, s.ws_address_message_burst, ctx.clock
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = self.ctx
        s = ctx.settings
        session = await ctx.sessions.authenticate(bearer_token(request, allow_query=True))
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
            heartbeat=s.ws_heartbeat,
            max_msg_size=s.ws_hard_max_message_size,
            compress=s.ws_compress,
            timeout=s.ws_close_timeout,
        )
        await ws.prepare(request)
        address = client_address(request, trust_forwarded_for=s.trust_forwarded_for)
        conn = Connection(ws, request, session, ctx, address)
        conn.start()
        resumed = await ctx.hub.attach(conn, character)
        log.debug("%s connected from %s (resumed=%s)", conn.describe(), address, resumed)
        try:
            await self._read_loop(conn)
        finally:
            self._conn_limiter.reset(conn.id)
            await ctx.hub.detach(conn)
            if conn.close_code is None:
                conn.close(ws.close_code or CLOSE_NORMAL, "closed")
            await conn.wait_closed()
            conn.finished.set()
            log.debug("%s closed (%s %s)", conn.describe(), conn.close_code, conn.close_reason)
        return ws

    async def _read_loop(self, conn: Connection) -> None:
        ws = conn.ws
        idle = self.ctx.settings.ws_idle_timeout
        while conn.close_code is None:
            try:
                msg = await ws.receive(timeout=idle)
            except TimeoutError:
                conn.close(CLOSE_NORMAL, "idle timeout")
                return
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
            else:  # CLOSE, CLOSING, CLOSED, ERROR (e.g. a frame over the hard limit)
                if msg.type == WSMsgType.CLOSE and msg.data == CLOSE_NORMAL:
                    conn.deliberate_leave = True
                return

    async def _on_text(self, conn: Connection, data: str) -> None:
        ctx = self.ctx
        wait = max(
            self._conn_limiter.hit(conn.id),
            self._account_limiter.hit(conn.account_id),
            self._address_limiter.hit(conn.address),
        )
        if wait > 0:
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
        try:
            msg = deserialize(data, max_size=ctx.settings.ws_max_message_size)
        except ProtocolError as exc:
            conn.send(error_message_from(exc))
            return
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
            conn.send(error_message_from(exc, ref_id=msg.message_id))
        except Exception:
            log.exception("%s handler for %s failed", conn.describe(), msg.type)
            conn.send(
                error_message_from(
                    LobbyError("internal error", code=ErrorCode.INTERNAL_ERROR),
                    ref_id=msg.message_id,
                )
            )
