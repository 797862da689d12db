"""The lobby WebSocket of a client: read loop, batching, heartbeats, reconnection.

:class:`LobbySocket` keeps one ``/ws`` connection authenticated with the
session's bearer token. Every message the lobby sends (one JSON object per
text frame, or a JSON array of them: a batch, split by
:func:`protocol.framing.decode_batch`) is decoded with
:func:`protocol.codec.deserialize` and handed to ``on_message`` in order. A
frame that does not decode becomes a local :class:`ErrorMessage` (the codec's
error code), so protocol errors always reach handlers as ``ErrorMessage``.

Reconnection with session recovery: when the socket drops without the client
asking (network error, lobby restart or shutdown ``1001``, slow-consumer
``1013``), the socket retries with the same session token after delays from
:class:`ReconnectPolicy` (exponential, bounded, jittered with a seeded
:class:`random.Random`). Reconnecting inside the lobby's reconnect grace
resumes the lobby presence silently; the lobby also accepts the token after a
restart (sessions are stored). A ``1008`` (session revoked or expired), a
``4000`` (the same session connected elsewhere) or a ``401`` at the upgrade
ends the session: no retry. After ``max_attempts`` failed attempts the socket
gives up and its state becomes ``"closed"``.

Every push carries a resume cursor (:mod:`protocol.resume`): the socket keeps the
last one (:attr:`LobbySocket.cursor`) and reconnects with it, so the lobby, on
whichever process the balancer picks, replays what the session missed, once and
in order. A replay the lobby could not complete (the cursor was older than what
it keeps) is counted in :attr:`LobbySocket.gaps` and logged: state pushed
meanwhile may be missing and is worth refetching.

Optional Fernet layer (``sealer``): every frame is a Fernet token of the JSON
text (see :data:`FERNET_WS_PARAM` and the NetworkClient documentation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import aiohttp

from mesh.client.rest import LobbyRest, unreachable
from protocol.codec import deserialize, error_message_from, serialize
from protocol.crypto import FernetSealer
from protocol.errors import (
    ApiError,
    DecodeError,
    ErrorCode,
    NotConnectedError,
    ProtocolError,
)
from protocol.framing import decode_batch
from protocol.messages.base import BaseMessage
from protocol.messages.system import HeartbeatMessage
from protocol.resume import REPLAY_GAP, RESUME_CURSOR_PARAM, unstamp

__all__ = [
    "CLOSE_TIMEOUT",
    "FERNET_WS_PARAM",
    "LobbySocket",
    "ReconnectPolicy",
    "SocketState",
]

logger = logging.getLogger("mesh.client")

SocketState = Literal["idle", "connecting", "connected", "reconnecting", "closed"]

FERNET_WS_PARAM = "encoding"
"""Query parameter naming the frame encoding: ``/ws?encoding=fernet`` when sealed."""

CLOSE_TIMEOUT = 5.0
"""Seconds :meth:`LobbySocket.close` waits for the lobby to send the goodbye and answer
the close frame before it drops the connection."""

_NO_RETRY_CODES = frozenset({1008, 4000})
"""Close codes after which the session is over (revoked/expired, replaced)."""


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Backoff of lobby reconnection attempts (seconds).

    Attempt ``n`` (0-based) waits ``min(max_delay, initial_delay * factor**n)``
    scaled by a factor drawn uniformly from ``[1 - jitter, 1]`` with the
    socket's RNG (seeded by ``seed``; None: from the OS). At most
    ``max_attempts`` attempts per outage; 0 disables reconnection.
    """

    initial_delay: float = 0.1
    max_delay: float = 5.0
    factor: float = 2.0
    jitter: float = 0.5
    max_attempts: int = 30
    seed: int | None = None

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before attempt ``attempt`` (0-based)."""
        base = min(self.max_delay, self.initial_delay * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * rng.random())


class LobbySocket:
    """One client's lobby WebSocket (see the module docstring)."""

    def __init__(
        self,
        rest: LobbyRest,
        *,
        on_message: Callable[[BaseMessage], None],
        on_state: Callable[[SocketState], None] | None = None,
        on_reconnected: Callable[[], Awaitable[None]] | None = None,
        policy: ReconnectPolicy | None = None,
        heartbeat_interval: float = 20.0,
        sealer: FernetSealer | None = None,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self._rest = rest
        self._close_timeout = close_timeout
        self._on_message = on_message
        self._on_state = on_state
        self._on_reconnected = on_reconnected
        self.policy = policy or ReconnectPolicy()
        self._rng = random.Random(self.policy.seed)  # noqa: S311 - backoff jitter, not crypto
        self._heartbeat_interval = heartbeat_interval
        self._sealer = sealer
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._closing = False
        self.state: SocketState = "idle"
        self.connected = asyncio.Event()
        """Set while the socket is open."""
        self.reconnects = 0
        """Successful reconnections so far."""
        self.last_close_code: int | None = None
        self.cursor: str | None = None
        """The resume cursor of the last push received (sent back on reconnection)."""
        self.gaps = 0
        """Reconnections after which the lobby said some pushes were lost (``replay: gap``)."""

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Connect once (raises :class:`ApiError` / :class:`NotConnectedError`), then serve."""
        if self._task is not None:
            return
        self._closing = False
        self._set_state("connecting")
        try:
            self._ws = await self._connect()
        except BaseException:
            self._set_state("idle")
            raise
        self._set_state("connected")
        self._task = asyncio.create_task(self._run(), name="mesh-lobby-ws")
        self._heartbeat = asyncio.create_task(self._beat(), name="mesh-lobby-heartbeat")

    async def close(self, *, goodbye: bytes | None = None) -> None:
        """Stop for good: optionally send ``goodbye`` text, close with 1000 (no reconnect).

        Returns within ``close_timeout`` seconds of waiting on the lobby (then the
        connection is dropped without its answer) plus the local clean-up.
        """
        self._closing = True
        ws = self._ws
        if ws is not None and not ws.closed:
            try:
                await asyncio.wait_for(self._say_goodbye(ws, goodbye), self._close_timeout)
            except TimeoutError:
                # aiohttp reads until the lobby's own close frame, each read with a fresh
                # timeout: a lobby that keeps sending but never answers would hold us forever
                logger.info("the lobby did not answer our close within %g s", self._close_timeout)
                await self.drop()
        for task in (self._heartbeat, self._task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._heartbeat = None
        self._ws = None
        self._set_state("closed")

    async def _say_goodbye(
        self, ws: aiohttp.ClientWebSocketResponse, goodbye: bytes | None
    ) -> None:
        with contextlib.suppress(Exception):
            if goodbye is not None:
                await ws.send_str(self._encode(goodbye.decode()))
            await ws.close(code=1000)

    async def drop(self) -> None:
        """Close the transport abruptly as a network failure would (fault tests use it; so
        does :meth:`close` when the lobby does not answer)."""
        ws = self._ws
        if ws is not None:
            conn = ws._response.connection  # noqa: SLF001 - aiohttp exposes no public abort
            if conn is not None and conn.transport is not None:
                conn.transport.abort()

    # -- sending ----------------------------------------------------------------------

    def is_open(self) -> bool:
        return self._ws is not None and not self._ws.closed and self.state == "connected"

    async def send(self, msg: BaseMessage) -> None:
        """Send one message now; raises :class:`NotConnectedError` while disconnected."""
        ws = self._ws
        if ws is None or ws.closed or self.state != "connected":
            raise NotConnectedError(f"the lobby connection is {self.state}: cannot send {msg.type}")
        if msg.timestamp is None:
            msg = msg.model_copy(update={"timestamp": time.time()})
        try:
            await ws.send_str(self._encode(serialize(msg)))
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            raise NotConnectedError(f"the lobby connection failed while sending: {exc}") from exc

    # -- internals --------------------------------------------------------------------

    def _set_state(self, state: SocketState) -> None:
        if state == self.state:
            return
        self.state = state
        if state == "connected":
            self.connected.set()
        else:
            self.connected.clear()
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                logger.exception("socket state callback failed")

    def _encode(self, text: str) -> str:
        if self._sealer is None:
            return text
        return self._sealer.seal(text.encode("utf-8"), now=time.time()).decode("ascii")

    def _decode(self, text: str) -> str:
        if self._sealer is None:
            return text
        return self._sealer.open(text.encode("ascii", "replace"), now=time.time()).decode("utf-8")

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        params = {RESUME_CURSOR_PARAM: self.cursor or ""}
        if self._sealer is not None:
            params[FERNET_WS_PARAM] = "fernet"
        try:
            return await self._rest.session.ws_connect(
                self._rest.ws_url,
                headers=self._rest.auth_headers(),
                params=params,
                heartbeat=max(self._heartbeat_interval, 1.0),
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise ApiError(
                f"the lobby refused the WebSocket: HTTP {exc.status} {exc.message}",
                code=ErrorCode.UNAUTHORIZED if exc.status == 401 else ErrorCode.UNAVAILABLE,
                status=exc.status,
            ) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise unreachable(f"the lobby WebSocket at {self._rest.ws_url}", exc) from exc

    async def _run(self) -> None:
        while True:
            ws = self._ws
            if ws is not None:
                await self._read(ws)
                self.last_close_code = ws.close_code
            if self._closing:
                return
            code = self.last_close_code
            if code in _NO_RETRY_CODES:
                logger.warning("lobby ended the session (close code %s)", code)
                self._ws = None
                self._set_state("closed")
                return
            self._set_state("reconnecting")
            ws = await self._reconnect()
            if ws is None:
                self._ws = None
                self._set_state("closed")
                return
            self._ws = ws
            self.reconnects += 1
            self._set_state("connected")
            logger.info("lobby connection restored (reconnect %d)", self.reconnects)
            if self._on_reconnected is not None:
                try:
                    await self._on_reconnected()
                except Exception:
                    logger.exception("after-reconnect step failed")

    async def _reconnect(self) -> aiohttp.ClientWebSocketResponse | None:
        for attempt in range(self.policy.max_attempts):
            await asyncio.sleep(self.policy.delay(attempt, self._rng))
            if self._closing:
                return None
            try:
                return await self._connect()
            except ApiError as exc:
                if exc.status == 401:
                    logger.warning("session no longer valid; not reconnecting: %s", exc)
                    return None
                logger.debug("reconnect attempt %d failed: %s", attempt + 1, exc)
        logger.warning("lobby unreachable after %d attempts; giving up", self.policy.max_attempts)
        return None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._on_frame(str(frame.data))
                elif frame.type == aiohttp.WSMsgType.ERROR:
                    break
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            logger.debug("lobby socket read failed: %s", exc)

    def _on_frame(self, text: str) -> None:
        try:
            plain = self._decode(text)
            items = decode_batch(plain)
        except (ProtocolError, UnicodeError) as exc:
            err = exc if isinstance(exc, ProtocolError) else DecodeError(str(exc))
            self._on_message(error_message_from(err))
            return
        for item in items:
            stamped = unstamp(item)
            if stamped.cursor is not None:
                self.cursor = stamped.cursor
            if stamped.replay == REPLAY_GAP:
                self.gaps += 1
                logger.warning("the lobby could not replay every push missed while disconnected")
            try:
                msg = deserialize(stamped.text)
            except ProtocolError as exc:
                self._on_message(error_message_from(exc))
                continue
            self._on_message(msg)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            if self.is_open():
                with contextlib.suppress(NotConnectedError):
                    await self.send(HeartbeatMessage(sent_at=time.time()))
