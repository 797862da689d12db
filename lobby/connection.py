"""One WebSocket client: its bounded send queue and the writer task that batches it.

Sending never awaits: :meth:`Connection.send` serializes the message (once per
broadcast, by the hub) and appends the text to a queue of at most
``ws_send_queue_max`` entries; the writer task takes what is queued and writes
it. One queued message goes out as one text frame holding the JSON object; two
or more go out as ONE text frame holding a JSON array of the message objects,
in order (at most ``ws_batch_max_messages`` messages / about
``ws_batch_max_bytes`` per frame). Clients must accept both forms.

A client that does not read makes the socket's buffers fill, the writer block
and the queue grow; when the queue is full the connection is cut with close
code 1013 (try again later): the queue is dropped, a close frame is attempted
for ``ws_close_timeout`` seconds and the transport is then aborted. The memory
held for a client is therefore bounded by the queue cap.

A connection opened with ``/ws?encoding=fernet`` carries a :class:`FernetFrames`
codec: the writer seals each frame's text (object or batch) into one Fernet token
just before writing it, and the endpoint opens each incoming frame before
decoding it. Without it a frame costs one ``is None`` check.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from typing import TYPE_CHECKING

from aiohttp import web

from lobby.config import Clock, LobbySettings
from lobby.sessions import Session
from protocol.codec import serialize
from protocol.crypto import FernetSealer
from protocol.errors import DecodeError
from protocol.messages import BaseMessage

if TYPE_CHECKING:
    from lobby.context import LobbyContext
    from lobby.hub import CharacterInfo, Presence

__all__ = [
    "CLOSE_FLOOD",
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_REPLACED",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_TOO_BIG",
    "Connection",
    "FernetFrames",
]

CLOSE_NORMAL = 1000
"""Logout, idle timeout."""
CLOSE_GOING_AWAY = 1001
"""The lobby is shutting down."""
CLOSE_POLICY = 1008
"""Session expired or revoked while connected."""
CLOSE_FLOOD = 1008
"""Kept flooding after ``rate_limited`` errors."""
CLOSE_TOO_BIG = 1009
"""A frame over the hard size limit (sent by aiohttp)."""
CLOSE_INTERNAL = 1011
CLOSE_SLOW_CONSUMER = 1013
"""The send queue filled up: the client does not read fast enough."""
CLOSE_REPLACED = 4000
"""The same session opened a newer connection."""

log = logging.getLogger("lobby.hub")
_ids = itertools.count(1)


class FernetFrames:
    """The Fernet frame encoding: every text frame is one token of the JSON text.

    Tokens are stamped with the lobby clock; :meth:`open` refuses tokens older
    than ``ttl`` seconds (or over a minute in the future) with
    :class:`~protocol.errors.SealError`.
    """

    __slots__ = ("_clock", "_sealer", "_ttl")

    name = "fernet"

    def __init__(self, sealer: FernetSealer, clock: Clock, ttl: float) -> None:
        self._sealer = sealer
        self._clock = clock
        self._ttl = ttl

    def seal(self, text: str) -> str:
        return self._sealer.seal(text.encode("utf-8"), now=self._clock()).decode("ascii")

    def open(self, frame: str) -> str:
        """The frame's plaintext; SealError if it does not open, DecodeError if not UTF-8."""
        plain = self._sealer.open(frame.encode("utf-8"), now=self._clock(), ttl=self._ttl)
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"the sealed frame is not UTF-8 text: {exc.reason}") from None


class Connection:
    """A connected WebSocket: identity, presence, send queue, writer task."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        session: Session,
        ctx: LobbyContext,
        address: str,
        frames: FernetFrames | None = None,
    ) -> None:
        self.id = next(_ids)
        self.ws = ws
        self.session = session
        self.ctx = ctx
        self.address = address
        self.frames = frames
        """The frame encoding (None: plain JSON text frames)."""
        self.presence: Presence | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.max_queue_seen = 0
        self.flood_strikes = 0
        self.deliberate_leave = False
        """The client said goodbye (DISCONNECT or close code 1000): no reconnect grace."""
        self._settings: LobbySettings = ctx.settings
        self._transport = request.transport
        self._queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing_task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        """Set when the socket is closed (close frame exchanged or transport aborted)."""
        self.finished = asyncio.Event()
        """Set when the endpoint is done with this client (hub detached, socket closed)."""

    # -- identity -----------------------------------------------------------------------

    @property
    def account_id(self) -> int:
        return self.session.account_id

    @property
    def character(self) -> CharacterInfo | None:
        """The selected character (None: may receive but not act as a character)."""
        return self.presence.character if self.presence else None

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    @property
    def is_open(self) -> bool:
        return self.close_code is None and not self.ws.closed

    def describe(self) -> str:
        return f"conn={self.id} {self.session.describe()}"

    # -- sending ------------------------------------------------------------------------

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name=f"lobby-ws-writer-{self.id}")

    def send(self, msg: BaseMessage) -> bool:
        """Queue ``msg`` for this client (timestamped now if unset); False if not queued."""
        if msg.timestamp is None:
            msg.timestamp = self.ctx.clock()
        return self.send_text(serialize(msg))

    def send_text(self, text: str) -> bool:
        """Queue an already serialized message; a full queue cuts the client off (1013)."""
        if self.close_code is not None:
            return False
        if len(self._queue) >= self._settings.ws_send_queue_max:
            log.warning("%s slow consumer: %d messages queued", self.describe(), len(self._queue))
            self.abort(CLOSE_SLOW_CONSUMER, "slow consumer: send queue full")
            return False
        self._queue.append(text)
        self.max_queue_seen = max(self.max_queue_seen, len(self._queue))
        self._wake.set()
        return True

    # -- closing ------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Close after flushing what is queued (non-blocking; see :attr:`closed`)."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        self._wake.set()
        self._closing_task = asyncio.create_task(self._close(flush=True))

    def abort(self, code: int, reason: str) -> None:
        """Drop what is queued and close now (the transport is aborted if it does not drain)."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        self._queue.clear()
        self._closing_task = asyncio.create_task(self._close(flush=False))

    async def wait_closed(self) -> None:
        await self.closed.wait()

    async def _close(self, *, flush: bool) -> None:
        timeout = self._settings.ws_close_timeout
        assert self.close_code is not None  # noqa: S101
        try:
            if self._writer is not None:
                if flush:
                    self._wake.set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self._writer), timeout)
                if not self._writer.done():
                    self._writer.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self._writer
            clean = False
            try:
                await asyncio.wait_for(
                    self.ws.close(code=self.close_code, message=self.close_reason.encode()),
                    timeout,
                )
                clean = True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # aiohttp cancels its close-wait future when the reader ends first
            except (TimeoutError, OSError, RuntimeError):
                pass
            if (not clean or not flush) and self._transport is not None:
                # The client does not read: nothing more can be written, drop the socket.
                self._transport.abort()
        finally:
            self.closed.set()

    async def _write_loop(self) -> None:
        max_msgs = self._settings.ws_batch_max_messages
        max_bytes = self._settings.ws_batch_max_bytes
        frames = self.frames
        try:
            while True:
                if not self._queue:
                    if self.close_code is not None:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch = [self._queue.popleft()]
                size = len(batch[0])
                while self._queue and len(batch) < max_msgs:
                    nxt = self._queue[0]
                    if size + len(nxt) + 1 > max_bytes:
                        break
                    batch.append(self._queue.popleft())
                    size += len(nxt) + 1
                frame = batch[0] if len(batch) == 1 else "[" + ",".join(batch) + "]"
                if frames is not None:
                    frame = frames.seal(frame)
                await self.ws.send_str(frame)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("%s writer stopped: %s", self.describe(), exc)
            self._queue.clear()
