"""The cluster's own raw Redis connections: the stream reader and the command link.

Every lobby process reads every entry of the cluster stream (:mod:`lobby.cluster_stream`)
and writes every push it sequences. Through the redis client each read or pipeline is a
pool checkout, a timeout task, packed commands and a general RESP3 parser, all in
Python: about 0.4 ms of CPU per chat in each process (measured on a 2-core machine),
a tenth of what delivering it to 333 local players costs, and most of the work of a
process that has few of them. Connections of the broker's own do without:

* :class:`StreamReader` follows the stream with blocking ``XREAD`` s and does the
  whole cycle inside the transport's data callback: parse the reply (the few RESP2
  forms a reply has, :class:`ReplyBuffer`), hand each entry to ``handle`` in stream order,
  write the next ``XREAD``.
* :class:`CommandLink` sends batches of commands, each in one write, pipelined, and
  returns their replies in order. The broker has two: its writer's (``XADD``, ``HSET``,
  ...), which waits for Redis far longer (a batch Redis may still run must not be
  delivered here too), and one with a short bounded wait for the chat retry
  check and the shared rate-limit budgets' scripts (a request must not hang on Redis).

They speak for plain TCP and Unix-socket Redis URLs, with or without a user and a
password and a database number (:func:`lean_target`); for anything else (TLS, a
credential provider) the broker goes through the redis client.

A reader whose connection closes, answers an error or stays silent for
:data:`STALL_SECONDS` past its blocking read's limit ends :meth:`StreamReader.run` with
the reason; the caller reconnects and reads on from :attr:`StreamReader.last`, the id of
the last entry handed over. A link with a timeout whose batch is not answered within it
drops the connection (that batch fails with :class:`ConnectionError`) and connects again
on the next batch; a link without one waits for Redis as long as the connection lives.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from protocol.errors import LobbyError

__all__ = [
    "STALL_SECONDS",
    "CommandLink",
    "LeanTarget",
    "ReplyBuffer",
    "RespError",
    "StreamReader",
    "command",
    "lean_target",
]

log = logging.getLogger("lobby.cluster")

STALL_SECONDS = 5.0
"""A reader that got no reply for this long past its blocking read's own limit gives up."""
_CONNECT_TIMEOUT = 5.0

Handle = Callable[[str, str, str], None]


class RespError(LobbyError):
    """Redis answered an error reply (``-ERR ...``)."""


@dataclass(frozen=True, slots=True)
class LeanTarget:
    """Where and how the lean reader connects: TCP ``host:port`` or the Unix ``path``."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None


def lean_target(pool: Any) -> LeanTarget | None:
    """The :class:`LeanTarget` of a redis connection pool, or None when its connections
    need more than this reader speaks (TLS, a credential provider, another class)."""
    from redis.asyncio.connection import Connection, UnixDomainSocketConnection

    kwargs: dict[str, Any] = dict(getattr(pool, "connection_kwargs", {}))
    if kwargs.get("credential_provider") is not None:
        return None
    db = int(kwargs.get("db") or 0)
    user, password = kwargs.get("username") or None, kwargs.get("password") or None
    cls = getattr(pool, "connection_class", None)
    if cls is UnixDomainSocketConnection:
        return LeanTarget(path=str(kwargs["path"]), db=db, username=user, password=password)
    if cls is Connection:
        host, port = str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379))
        return LeanTarget(host, port, db=db, username=user, password=password)
    return None


def command(*args: str | bytes) -> bytes:
    """``args`` as one RESP command (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class ReplyBuffer:
    """What a connection received so far, cut into whole replies.

    Bulk strings come out as ``bytes``, arrays as lists, nulls as None, simple strings as
    ``str``, integers as ``int`` and error replies as :class:`RespError` instances
    (returned, not raised).

    Parses incrementally: each element is decoded once however the replies are cut into
    pieces (an array whose elements have arrived so far keeps them; the next piece goes
    on from the first element it lacks), so a reply of many megabytes arriving in many
    reads costs time linear in its size. A bulk string is waited for whole (its header
    is read again on each read until then).
    """

    __slots__ = ("_buf", "_open")

    def __init__(self) -> None:
        self._buf = bytearray()
        # the arrays under way, outermost first: (their length, their elements so far)
        self._open: list[tuple[int, list[Any]]] = []

    def feed(self, data: bytes) -> list[Any]:
        """The replies ``data`` completes, in order (the rest waits for more); ValueError
        on what is not RESP2 (the buffer is then unusable: drop the connection)."""
        buf: bytes | bytearray
        if self._buf:
            buf = self._buf
            buf += data
        else:
            buf = data  # the usual case: nothing pending, parse the read itself
        opened = self._open
        replies: list[Any] = []
        pos, size = 0, len(buf)
        item: Any
        while pos < size:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            kind = buf[pos]
            if kind == 0x24:  # $ bulk string
                length = int(buf[pos + 1 : end])
                if length < 0:
                    item, pos = None, end + 2
                else:
                    stop = end + 2 + length
                    if size < stop + 2:
                        break  # wait for the whole string (its header is read again then)
                    item, pos = bytes(buf[end + 2 : stop]), stop + 2
            elif kind == 0x2A:  # * array
                count = int(buf[pos + 1 : end])
                pos = end + 2
                if count > 0:
                    opened.append((count, []))
                    continue
                item = None if count < 0 else []
            elif kind == 0x2B:  # + simple string
                item, pos = buf[pos + 1 : end].decode("utf-8", "replace"), end + 2
            elif kind == 0x3A:  # : integer
                item, pos = int(buf[pos + 1 : end]), end + 2
            elif kind == 0x2D:  # - error
                item, pos = RespError(buf[pos + 1 : end].decode("utf-8", "replace")), end + 2
            else:
                raise ValueError(f"not a RESP2 reply: {bytes(buf[pos : pos + 16])!r}")
            # ``item`` is whole: it completes the arrays it ends, innermost first
            while opened:
                count, items = opened[-1]
                items.append(item)
                if len(items) < count:
                    break
                opened.pop()
                item = items
            else:
                replies.append(item)
        if buf is data:
            self._buf = bytearray(data[pos:]) if pos < size else bytearray()
        else:
            del self._buf[:pos]  # cheap: a bytearray drops its head without moving the rest
        return replies


def _login(target: LeanTarget) -> list[bytes]:
    """The commands a new connection to ``target`` sends first (each answers ``OK``)."""
    setup = []
    if target.password is not None:
        user = () if target.username is None else (target.username,)
        setup.append(command("AUTH", *user, target.password))
    if target.db:
        setup.append(command("SELECT", str(target.db)))
    return setup


async def _open(target: LeanTarget, protocol: asyncio.Protocol) -> None:
    """Connect ``protocol`` to ``target`` (TimeoutError after ``_CONNECT_TIMEOUT``)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(_CONNECT_TIMEOUT):
        if target.path is not None:
            await loop.create_unix_connection(lambda: protocol, target.path)
        else:
            await loop.create_connection(lambda: protocol, target.host, target.port)


class StreamReader(asyncio.Protocol):
    """Follows stream ``key`` after entry ``last``: ``handle(entry id, kind, data)`` for
    each entry (its ``k`` and ``d`` fields), in order, from the transport's callback.

    :meth:`run` connects and returns only by raising: the connection's end, an error
    reply, or silence past the blocking read's limit plus :data:`STALL_SECONDS`.
    """

    def __init__(self, key: str, last: str, handle: Handle, *, count: int, block_ms: int) -> None:
        self.last = last
        """The id of the last entry handed to ``handle`` (where a new reader starts)."""
        self._handle = handle
        # the command but its last argument (the id to read after, appended per read)
        whole = command("XREAD", "COUNT", str(count), "BLOCK", str(block_ms), "STREAMS", key, "")
        self._head = whole[: -len(b"$0\r\n\r\n")]
        self._stall = block_ms / 1000 + STALL_SECONDS
        self._received = ReplyBuffer()
        self._setup_replies = 0
        self._replies = 0
        self._transport: asyncio.Transport | None = None
        self._ended: asyncio.Future[None] | None = None

    async def run(self, target: LeanTarget) -> None:
        """Connect to ``target`` and read until the connection fails (raises why)."""
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        self._ended = ended
        setup = _login(target)
        self._setup_replies = len(setup)
        try:
            await _open(target, self)
            assert self._transport is not None  # noqa: S101 - set by connection_made
            self._transport.write(b"".join(setup) + self._next_read())
            while True:
                seen = self._replies
                done, _ = await asyncio.wait([ended], timeout=self._stall)
                if done:
                    ended.result()  # raises what ended the connection
                    raise ConnectionError("the stream reader's connection closed")
                if self._replies == seen:
                    raise TimeoutError(f"no stream reply for {self._stall:g} s")
        finally:
            self._ended = None  # what the closing transport reports next is nobody's news
            if ended.done() and not ended.cancelled():
                ended.exception()  # retrieved (it is what we raise, or we were cancelled)
            if self._transport is not None:
                self._transport.abort()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream connection (uvloop's transports are not asyncio.Transport subclasses)
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or ConnectionError("Redis closed the stream reader's connection"))

    def data_received(self, data: bytes) -> None:
        try:
            for reply in self._received.feed(data):
                self._reply(reply)
        except Exception as exc:  # a bad reply or an error answer: this connection is done
            self._end(exc)
            if self._transport is not None:
                self._transport.abort()

    # -- internals ------------------------------------------------------------------------

    def _next_read(self) -> bytes:
        last = self.last.encode()
        return b"%s$%d\r\n%s\r\n" % (self._head, len(last), last)

    def _reply(self, reply: Any) -> None:
        if isinstance(reply, RespError):
            raise reply
        if self._setup_replies:  # AUTH / SELECT answered OK
            self._setup_replies -= 1
            return
        self._replies += 1
        handle = self._handle
        for _name, entries in reply or ():
            for raw_id, fields in entries:
                entry_id = raw_id.decode()
                self.last = entry_id
                kind = data = ""
                pairs = fields or ()
                for i in range(0, len(pairs) - 1, 2):
                    name = pairs[i]
                    if name == b"k":
                        kind = pairs[i + 1].decode("utf-8", "replace")
                    elif name == b"d":
                        data = pairs[i + 1].decode("utf-8", "replace")
                try:
                    handle(entry_id, kind, data)
                except Exception:
                    log.exception("a cluster stream entry could not be handled")
        assert self._transport is not None  # noqa: S101 - replies come over it
        self._transport.write(self._next_read())

    def _end(self, exc: BaseException) -> None:
        ended = self._ended
        if ended is not None and not ended.done():
            ended.set_exception(exc)


class _Link(enum.Enum):
    """Where a :class:`CommandLink`'s connection is (one value, not several flags)."""

    IDLE = "idle"
    """No connection: the next batch connects."""
    CONNECTING = "connecting"
    """Connecting or logging in: batches wait for it (one written before the login's
    replies are in would run unauthenticated, or in database 0)."""
    READY = "ready"
    """Logged in and in its database: batches are written at once."""
    CLOSED = "closed"
    """Closed for good: every batch fails."""


class CommandLink(asyncio.Protocol):
    """Pipelined commands over one connection to ``target``: :meth:`execute` writes a
    batch in one write and returns its replies (error replies as :class:`RespError`
    values), in order. Batches may overlap; their replies come back in the order sent.

    A batch is written only on a connection whose login (``AUTH``, ``SELECT``) Redis
    has answered ``OK``; batches that come while it connects wait for that one connect.
    With a ``timeout``, a batch not answered within it drops the connection (it and the
    batches behind it fail); with None a batch waits as long as its connection lives
    (for writes that must not be reported failed while Redis may still run them).
    """

    def __init__(self, target: LeanTarget, timeout: float | None) -> None:
        self._target = target
        self._timeout = timeout
        self._state = _Link.IDLE
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._received = ReplyBuffer()
        self._waiting: deque[tuple[int, list[Any], asyncio.Future[list[Any]]]] = deque()

    async def execute(self, commands: list[bytes]) -> list[Any]:
        """The replies of ``commands`` (each from :func:`command`); ConnectionError (or
        OSError, TimeoutError) when the connection fails or stays silent too long."""
        if self._state is not _Link.READY:
            await self._connect()
        return await self._send(commands, self._timeout)

    def close(self) -> None:
        """Close for good: what is waiting fails, and so does every later batch."""
        self._state = _Link.CLOSED
        self._drop()

    def _drop(self) -> None:
        """Drop the connection (what is waiting fails); the next batch connects again."""
        if self._transport is not None:
            self._transport.abort()

    async def _connect(self) -> None:
        """Make the link READY: connect and log in, or wait for the connect under way."""
        if self._state is _Link.CLOSED:
            raise ConnectionError("the command link is closed")
        if self._connecting is not None:  # another batch is connecting: wait for it
            await asyncio.shield(self._connecting)
            return
        loop = asyncio.get_running_loop()
        connecting = self._connecting = loop.create_future()
        self._state = _Link.CONNECTING
        try:
            await _open(self._target, self)
            if self._state is _Link.CLOSED:  # closed while it connected
                self._drop()
                raise ConnectionError("the command link is closed")
            setup = _login(self._target)
            if setup:
                for reply in await self._send(setup, _CONNECT_TIMEOUT):
                    if isinstance(reply, RespError):
                        self._drop()
                        raise reply
            if self._state is not _Link.CONNECTING:  # lost or closed meanwhile
                raise ConnectionError("the command link's connection closed")
            self._state = _Link.READY
            connecting.set_result(None)
        except BaseException as exc:
            if self._state is _Link.CONNECTING:
                self._state = _Link.IDLE
                self._drop()
            connecting.set_exception(ConnectionError(f"Redis unreachable: {exc}"))
            connecting.exception()  # the waiters' news, not the loop's
            raise
        finally:
            self._connecting = None

    async def _send(self, commands: list[bytes], limit: float | None) -> list[Any]:
        """Write ``commands`` and await their replies (a connection unanswered for
        ``limit`` seconds is dropped; None: no limit)."""
        transport = self._transport
        if transport is None:
            raise ConnectionError("the command link's connection closed")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Any]] = loop.create_future()
        self._waiting.append((len(commands), [], done))
        transport.write(b"".join(commands))
        if limit is None:
            return await done
        timer = loop.call_later(limit, self._stalled, done, limit)
        try:
            return await done
        finally:
            timer.cancel()

    def _stalled(self, done: asyncio.Future[list[Any]], limit: float) -> None:
        if not done.done():
            log.warning("Redis did not answer for %g s; reconnecting", limit)
            self._drop()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not yet usable: execute() writes only once the state is READY (after the login)
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._state is not _Link.CLOSED:
            self._state = _Link.IDLE
        self._received = ReplyBuffer()
        waiting, self._waiting = self._waiting, deque()
        for _, _, done in waiting:
            if not done.done():
                done.set_exception(ConnectionError(f"the Redis connection closed ({exc})"))

    def data_received(self, data: bytes) -> None:
        waiting = self._waiting
        try:
            for reply in self._received.feed(data):
                if not waiting:
                    raise ValueError("a reply nobody asked for")
                count, replies, done = waiting[0]
                replies.append(reply)
                if len(replies) == count:
                    waiting.popleft()
                    if not done.done():
                        done.set_result(replies)
        except ValueError as exc:  # not RESP2, or out of step: this connection is done
            log.warning("Redis sent what the command link cannot read (%s)", exc)
            self._drop()
