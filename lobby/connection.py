"""One WebSocket client: its bounded send queue and the writer task that batches it.

Sending never awaits: :meth:`Connection.send` serializes the message (once per
broadcast, by the hub) and appends the text to a queue of at most
``ws_send_queue_max`` entries. What is queued is written once per event-loop
iteration: a :class:`WriteFlusher` (one per lobby, shared by its connections)
runs one callback for every connection that queued something since its last
pass and writes each one's queue right there, as long as the socket takes the
data without waiting (the common case; a broadcast to N clients costs N writes,
not N task wake-ups). A write that has to wait for the socket to drain is
finished by the connection's writer task, which then writes whatever queued
meanwhile; only one of the two writes at a time, so frames stay in order. The
writer task is only created the first time a write has to wait (or a close has
something left to flush): a client that keeps up costs no task of its own, which
keeps connecting cheap when thousands reconnect at once. One
queued message goes out as one text frame holding the JSON object; two or more
go out as ONE text frame holding a JSON array of the message objects, in order
(at most ``ws_batch_max_messages`` messages / about ``ws_batch_max_bytes`` per
frame). Clients must accept both forms.

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
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lobby.config import Clock, LobbySettings
from lobby.sessions import Session
from protocol.codec import serialize
from protocol.crypto import FernetSealer
from protocol.errors import DecodeError
from protocol.framing import encode_batch
from protocol.messages import BaseMessage

if TYPE_CHECKING:
    from lobby.context import LobbyContext
    from lobby.presence import CharacterInfo, Presence

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
    "WriteFlusher",
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

_Send = Coroutine[Any, Any, None]


class WriteFlusher:
    """Writes the queues of the connections that queued something, once per loop iteration."""

    __slots__ = ("_dirty", "_loop", "_scheduled")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty: list[Connection] = []
        self._scheduled = False

    def add(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn._flush()


async def _finish(send: _Send, waiting: Any) -> None:
    """Run ``send`` to its end after it suspended on ``waiting`` when stepped by hand."""
    while True:
        try:
            if waiting is None:  # a bare yield: give the loop one turn
                await asyncio.sleep(0)
            else:  # a future, flagged by the yield; take it over as a task would
                waiting._asyncio_future_blocking = False
                await waiting
        except asyncio.CancelledError:
            if waiting is None or not waiting.cancelled():  # this task was cancelled
                send.close()
                raise
        except BaseException:  # noqa: S110 - ``send`` meets the same failure as it resumes
            pass
        try:
            waiting = send.send(None)
        except StopIteration:
            return


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
        flusher: WriteFlusher | None = None,
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
        self.last_heard = asyncio.get_running_loop().time()
        """Loop time of the client's last frame (or of the connect): the idle timeout's clock."""
        self._settings: LobbySettings = ctx.settings
        self._transport = request.transport
        self._queue: deque[str] = deque()
        self._flusher = flusher or WriteFlusher()
        self._flush_pending = False
        self._started = False
        """Writing may begin (:meth:`start`); what is queued before waits for it."""
        self._busy = False
        """The writer task owns the socket: it is writing, or finishing a suspended write."""
        self._suspended: tuple[_Send, Any] | None = None
        self._broken = False
        self._wake: asyncio.Event | None = None
        """Wakes the writer task (made with it: a client that keeps up has neither)."""
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
        """The socket is prepared: write what is queued, and from now on what gets queued."""
        self._started = True
        if self._queue and not self._flush_pending:
            self._flush_pending = True
            self._flusher.add(self)

    def _ensure_writer(self) -> None:
        if self._writer is None:
            self._wake = asyncio.Event()
            self._writer = asyncio.create_task(
                self._write_loop(), name=f"lobby-ws-writer-{self.id}"
            )

    def send(self, msg: BaseMessage) -> bool:
        """Queue ``msg`` for this client (timestamped now if unset); False if not queued."""
        if msg.timestamp is None:
            msg.timestamp = self.ctx.clock()
        sent = self.send_text(serialize(msg))
        self.ctx.metrics.sent(msg.type, sent)
        return sent

    def send_text(self, text: str) -> bool:
        """Queue an already serialized message; a full queue cuts the client off (1013)."""
        if self.close_code is not None:
            return False
        if len(self._queue) >= self._settings.ws_send_queue_max:
            log.warning("%s slow consumer: %d messages queued", self.describe(), len(self._queue))
            self.abort(CLOSE_SLOW_CONSUMER, "slow consumer: send queue full")
            self.ctx.metrics.slow_consumer_cut()
            return False
        queue = self._queue
        queue.append(text)
        if len(queue) > self.max_queue_seen:
            self.max_queue_seen = len(queue)
        if not self._flush_pending and not self._busy:
            self._flush_pending = True
            self._flusher.add(self)
        return True

    # -- closing ------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Close after flushing what is queued (non-blocking; see :attr:`closed`)."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        self._poke()
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
            if flush and self._started and (self._queue or self._suspended is not None):
                self._ensure_writer()
            if self._writer is not None:
                if flush:
                    self._poke()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self._writer), timeout)
                if not self._writer.done():
                    self._writer.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self._writer
                if self._suspended is not None:  # handed over, never picked up
                    self._suspended[0].close()
                    self._suspended = None
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

    def _next_frame(self) -> str:
        """Take the next frame off the queue: one message, or a batch as a JSON array."""
        queue = self._queue
        if len(queue) == 1:  # the common case: one message, one frame
            frame = queue.popleft()
            return frame if self.frames is None else self.frames.seal(frame)
        batch = [queue.popleft()]
        size = len(batch[0])
        max_msgs = self._settings.ws_batch_max_messages
        max_bytes = self._settings.ws_batch_max_bytes
        while queue and len(batch) < max_msgs:
            nxt = queue[0]
            if size + len(nxt) + 1 > max_bytes:
                break
            batch.append(queue.popleft())
            size += len(nxt) + 1
        frame = encode_batch(batch)
        if self.frames is not None:
            frame = self.frames.seal(frame)
        return frame

    def _flush(self) -> None:
        """Write the queue now (called by the flusher); a write that must wait goes to the task."""
        self._flush_pending = False
        writer = self._writer
        if self._busy or self._broken or not self._started:
            return
        if writer is not None and writer.done():  # the writer gave up on this socket
            return
        queue, frames = self._queue, self.frames
        while queue:
            if len(queue) == 1 and frames is None:  # the common case, without a call
                text = queue.popleft()
            else:
                text = self._next_frame()
            send = self.ws.send_str(text)
            try:
                waiting = send.send(None)
            except StopIteration:
                continue
            except (ConnectionError, RuntimeError) as exc:
                self._stop_writing(exc)
                return
            self._busy = True
            self._suspended = (send, waiting)
            self._ensure_writer()
            self._poke()
            return

    def _poke(self) -> None:
        """Wake the writer task, if there is one (it checks its state before it waits)."""
        if self._wake is not None:
            self._wake.set()

    def _stop_writing(self, exc: Exception) -> None:
        log.debug("%s writer stopped: %s", self.describe(), exc)
        self._queue.clear()
        self._broken = True
        self._poke()

    async def _write_loop(self) -> None:
        try:
            while True:
                if self._broken:
                    return
                suspended = self._suspended
                if suspended is not None:
                    self._suspended = None
                    await _finish(*suspended)
                    continue
                if not self._queue:
                    self._busy = False
                    if self.close_code is not None:
                        return
                    wake = self._wake
                    assert wake is not None  # noqa: S101 - made with this task
                    wake.clear()
                    await wake.wait()
                    continue
                self._busy = True
                await self.ws.send_str(self._next_frame())
        except (ConnectionError, RuntimeError) as exc:
            self._stop_writing(exc)
