"""The WebSocket hub: who is online, message dispatch, presence and the reconnect grace.

Presence is per session: a session connects with its token, and the hub keeps a
:class:`Presence` for it (account, selected character, the live
:class:`~lobby.connection.Connection` if any). When the socket drops, the
presence stays for ``reconnect_grace`` seconds: messages routed to it meanwhile
go into a bounded backlog (``ws_backlog_max``, oldest dropped first), and a
reconnect with the same session within the window resumes it silently (no
leave/join announcements) and receives the backlog first. "The same session" is
the session id, its account and its token hash together: nothing resumes by a
row id alone. A client that says goodbye (a ``DISCONNECT`` message, or closing
with code 1000) leaves at once. When the grace runs
out (checked by :meth:`Hub.expire`, driven by the injectable clock) or the
session logs out, the presence leaves: ``on_leave`` hooks run and players at
the same location get ``PLAYER_LEFT_AREA``. A presence with a character that
comes online announces ``PLAYER_JOINED_AREA`` there and runs ``on_join`` hooks.

Resume cursors (:mod:`protocol.resume`): every push has one, and a connection
that asked for them (``cursor`` on ``GET /ws``) gets it stamped on each push.
Alone, the cursor is this process's push counter and a resume with a cursor
skips the backlog entries the client already had. With a sequenced broker (the
Redis cluster) every push is delivered when it comes back from the cluster's
stream, so each process delivers in the stream's one order; a resume with a
cursor, on whichever process, is replayed from the stream what the session's
audiences got after it (:meth:`Hub.attach`), and live pushes that arrive during
the replay wait behind it: no gap, no duplicate (a push at or before the
presence's cursor is never delivered again). A resume with a cursor ends with a
``HEARTBEAT`` stamped ``replay: complete`` or ``replay: gap``.

Extension points for services:

* ``hub.register(MessageType.X, handler)``: ``handler(conn, msg)`` is awaited
  for each incoming message of that type, in order per connection. Raise a
  :class:`~protocol.errors.ShardsError` to answer ``ERROR`` (with ``ref_id``);
  the connection stays up.
* ``hub.on_join(hook)`` / ``hub.on_leave(hook)``: ``async hook(presence)``.
* ``hub.broadcast(msg, where=...)``, ``hub.broadcast_to_location(id, msg)``,
  ``hub.send_to_character(id, msg)``, ``hub.send_to_account``,
  ``hub.send_to_session``: serialize once (timestamped by the clock), queue to
  every matching presence (online or inside its grace window).
* ``hub.update_character(character_id, location_id=...)`` keeps the hub's
  view of a character (faction, location, level) current after a change.
"""

from __future__ import annotations

import hmac
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from lobby.broker import Audience, AudienceKind, Broker, LocalBroker, Push
from lobby.config import Clock, LobbySettings
from lobby.connection import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_REPLACED,
    Connection,
)
from lobby.metrics import LobbyMetrics
from lobby.presence import CharacterInfo, Presence, PresenceIndex
from protocol.codec import serialize
from protocol.errors import ErrorCode, LobbyError
from protocol.messages import (
    BaseMessage,
    DisconnectMessage,
    HeartbeatMessage,
    MessageType,
    PlayerJoinedAreaMessage,
    PlayerLeftAreaMessage,
)
from protocol.resume import REPLAY_COMPLETE, REPLAY_GAP, CursorKey, stamp

__all__ = ["CharacterInfo", "Hub", "MessageHandler", "Presence", "PresenceHook"]

log = logging.getLogger("lobby.hub")

MessageHandler = Callable[[Connection, Any], Awaitable[None]]
PresenceHook = Callable[["Presence"], Awaitable[None]]


class Hub:
    """Every presence and connection of one lobby, and the message dispatcher."""

    def __init__(
        self,
        settings: LobbySettings,
        clock: Clock,
        metrics: LobbyMetrics | None = None,
        broker: Broker | None = None,
    ) -> None:
        self._settings = settings
        self.broker: Broker = broker or LocalBroker()
        """Forwards pushes to the presences other lobby processes hold (lobby.broker)."""
        self.metrics = metrics or LobbyMetrics()
        self._clock = clock
        self._handlers: dict[MessageType, MessageHandler] = {}
        self.index = PresenceIndex()
        """Every presence of this process and its indexes (read here; changed only by
        the hub, through the index's methods)."""
        # the index's own dicts, named for the routing that reads them on every push
        self._presences = self.index.by_session
        self._by_character = self.index.by_character
        self._by_location = self.index.by_location
        self._join_hooks: list[PresenceHook] = []
        self._leave_hooks: list[PresenceHook] = []
        self.announce_presence = True
        # the cursors of one process alone: "<start ms>-<n>" (a resume never outlives it)
        self._epoch = int(clock() * 1000)
        self._pushes = itertools.count(1)

    # -- registration ---------------------------------------------------------------------

    def register(self, msg_type: MessageType, handler: MessageHandler) -> None:
        """Handle incoming ``msg_type`` messages with ``handler(conn, msg)`` (one per type)."""
        if msg_type in self._handlers:
            raise ValueError(f"a handler for {msg_type.value} is already registered")
        self._handlers[msg_type] = handler

    def handler_for(self, msg_type: MessageType) -> MessageHandler | None:
        return self._handlers.get(msg_type)

    def on_join(self, hook: PresenceHook) -> None:
        self._join_hooks.append(hook)

    def on_leave(self, hook: PresenceHook) -> None:
        self._leave_hooks.append(hook)

    # -- queries ----------------------------------------------------------------------------

    def presences(self) -> Iterator[Presence]:
        return iter(list(self._presences.values()))

    def presence(self, session_id: int) -> Presence | None:
        return self._presences.get(session_id)

    def connections(self) -> list[Connection]:
        return [p.conn for p in self._presences.values() if p.conn is not None]

    def presence_of_character(self, character_id: int) -> Presence | None:
        return self.index.of_character(character_id)

    @property
    def presence_version(self) -> int:
        """Bumped whenever a presence comes or goes or its selected character changes
        (not on location or level updates): a cache of ``players_online`` keys on it."""
        return self.index.version

    @property
    def players_online(self) -> int:
        """Presences with a selected character (online or inside their grace) of this process."""
        return self.index.players

    @property
    def players_in_cluster(self) -> int:
        """:attr:`players_online` of every lobby process (this one's alone without a cluster)."""
        return self.index.players + self.broker.players_elsewhere

    def connections_of_account(self, account_id: int) -> int:
        """Live connections of ``account_id`` (costs its own sessions, not everyone's)."""
        return self.index.live_connections_of(account_id)

    # -- sending ----------------------------------------------------------------------------

    def broadcast(
        self,
        msg: BaseMessage,
        *,
        where: Callable[[Presence], bool] | None = None,
        exclude_session: int | None = None,
    ) -> int:
        """Queue ``msg`` to every presence matching ``where``; return how many got it.

        ``where`` is an :class:`Audience` (every process's presences) or any predicate
        (this process's alone; with a sequenced broker such pushes have no cursor).
        """
        broker = self.broker
        if broker.distributed and (where is None or isinstance(where, Audience)):
            audience = where or Audience.everyone()
            if exclude_session is not None:
                audience = replace(audience, exclude_session=exclude_session)
            if broker.sequenced:
                return self._sequence(msg, audience, list(self._presences.values()))
            text = self._text(msg)
            count = self._deliver_each(self._presences.values(), audience, Push(text))
            broker.forward(audience, text)
        else:
            push = self._push(msg)
            if (
                isinstance(where, Audience)
                and where.kind is AudienceKind.EVERYONE
                and where.exclude_character is None
                and (where.exclude_session is None or exclude_session is None)
            ):
                # everyone but at most one session: no audience test per presence
                if exclude_session is None:
                    exclude_session = where.exclude_session
                where = None
            deliver = self._deliver
            count = 0
            for p in list(self._presences.values()):
                if p.session_id == exclude_session or (where is not None and not where(p)):
                    continue
                count += deliver(p, push)
        self.metrics.sent(msg.type, count)
        return count

    def send_to_session(self, session_id: int, msg: BaseMessage) -> bool:
        p = self._presences.get(session_id)
        broker = self.broker
        if broker.sequenced:
            sent = bool(self._sequence(msg, Audience.session(session_id), [p] if p else []))
            return sent
        if p is None and broker.distributed:
            sent = bool(broker.forward(Audience.session(session_id), self._text(msg)))
        else:
            sent = bool(p and self._deliver(p, self._push(msg)))
        self.metrics.sent(msg.type, sent)
        return sent

    def send_to_character(self, character_id: int, msg: BaseMessage) -> bool:
        """Queue ``msg`` to the presence playing ``character_id`` (False if none)."""
        holders = list(self._by_character.get(character_id, {}).values())
        broker = self.broker
        if broker.sequenced:
            return bool(self._sequence(msg, Audience.character(character_id), holders))
        push = self._push(msg)
        count = 0
        for p in holders:
            count += self._deliver(p, push)
        if not count and broker.distributed:
            count = broker.forward(Audience.character(character_id), push.text)
        self.metrics.sent(msg.type, count)
        return bool(count)

    def broadcast_to_location(
        self, location_id: int, msg: BaseMessage, *, exclude_session: int | None = None
    ) -> int:
        """Queue ``msg`` to every character standing at ``location_id``."""
        here = list(self._by_location.get(location_id, ()))
        broker = self.broker
        audience = Audience.location(location_id, exclude_session=exclude_session)
        if broker.sequenced:
            return self._sequence(msg, audience, here)
        push = self._push(msg)
        count = 0
        for p in here:
            if p.session_id != exclude_session:
                count += self._deliver(p, push)
        if broker.distributed:
            broker.forward(audience, push.text)
        self.metrics.sent(msg.type, count)
        return count

    def send_to_account(self, account_id: int, msg: BaseMessage) -> int:
        return self.broadcast(msg, where=Audience.account(account_id))

    def deliver(self, audience: Audience, text: str) -> int:
        """Queue an already encoded push to the local ``audience``, without a cursor (the
        broker's fallback while the stream is unreachable; every other push goes through
        :meth:`broadcast` and the ``send_to_*`` methods, so it is sequenced)."""
        return self.deliver_push(audience, Push(text))

    def deliver_push(self, audience: Audience, push: Push) -> int:
        """Queue ``push`` to the local ``audience`` (the broker's delivery: a push from
        the stream, cursor and all)."""
        key = audience.key
        if audience.kind is AudienceKind.EVERYONE and audience.exclude_character is None:
            # everyone but at most one session (chat, announcements): no audience test per
            # presence, the loop of the single process's broadcast
            skip = audience.exclude_session
            deliver = self._deliver
            count = 0
            for p in list(self._presences.values()):
                if p.session_id != skip:
                    count += deliver(p, push)
            return count
        if audience.kind is AudienceKind.CHARACTER and isinstance(key, int):
            candidates: Iterator[Presence] = iter(list(self._by_character.get(key, {}).values()))
        elif audience.kind is AudienceKind.LOCATION and isinstance(key, int):
            candidates = iter(list(self._by_location.get(key, ())))
        elif audience.kind is AudienceKind.SESSION and isinstance(key, int):
            held = self._presences.get(key)
            candidates = iter([held] if held is not None else [])
        else:
            candidates = iter(list(self._presences.values()))
        return sum(self._deliver(p, push) for p in candidates if audience(p))

    def online_elsewhere(self, character_id: int) -> bool:
        """True if another lobby process holds ``character_id`` (always False alone)."""
        return self.broker.distributed and self.broker.online_elsewhere(character_id)

    # -- lifecycle --------------------------------------------------------------------------

    async def attach(
        self,
        conn: Connection,
        character: CharacterInfo | None,
        *,
        stamps: bool = False,
        after: CursorKey | None = None,
    ) -> bool:
        """Bind a new connection to its session's presence; True if it resumed one.

        A presence resumes only for the session that made it: same id, same account
        and same token hash. A stale presence found under the id (another session's)
        leaves first, and the connection starts a fresh one.

        ``stamps``: the connection gets each push's cursor. ``after``: the last cursor
        the client saw; it gets every push meant for it after that one, once, before
        the live ones (from the stream with a sequenced broker, else from the backlog)
        and then a ``HEARTBEAT`` stamped ``replay``: ``complete``, or ``gap`` when some
        are gone (the stream no longer has them, the backlog overflowed, or, alone,
        this process has nothing of the session).
        """
        session = conn.session
        p = self._presences.get(session.id)
        if p is not None and not _same_session(p, session.account_id, session.token_hash):
            # Left behind by another session under this id (ids are never reused, so
            # only a database that lost its sequence gets here): never hand it over.
            log.warning("%s: a presence of another session had its id; it leaves", conn.describe())
            await self.end_session(session.id, reason="session ended")
            p = None
        resumed = p is not None
        if p is None:
            p = Presence(
                session_id=session.id,
                account_id=session.account_id,
                username=session.username,
                is_admin=session.is_admin,
                resume_key=session.token_hash,
                character=character,
            )
            self.index.add(p)
        elif p.conn is not None:
            old = p.conn
            old.presence = None
            old.close(CLOSE_REPLACED, "replaced by a newer connection of this session")
        p.conn = conn
        p.disconnected_at = None
        p.stamps = stamps or after is not None
        conn.presence = p
        if resumed and p.dropped:
            log.info("%s resumed; %d queued messages were dropped", conn.describe(), p.dropped)
        if after is not None:
            complete = await self._resume(p, after, resumed=resumed)
            if p.conn is conn:
                notice = serialize(HeartbeatMessage(timestamp=self._clock()))
                conn.send_text(stamp(notice, replay=REPLAY_COMPLETE if complete else REPLAY_GAP))
        elif resumed:
            while p.backlog:
                push = p.backlog.popleft()
                conn.send_text(push.stamped() if p.stamps else push.text)
        p.dropped = 0
        if resumed:
            if character is not None and (p.character is None or p.character.id != character.id):
                await self.set_character(session.id, character)
        elif character is not None:
            await self._joined(p)
        return resumed

    async def _resume(self, p: Presence, after: CursorKey, *, resumed: bool) -> bool:
        """Deliver to ``p`` what it missed after cursor ``after``; True if nothing is lost.

        In order: what the stream kept after ``after`` (sequenced broker: an await,
        during which the live pushes for ``p`` wait in ``p.replaying``), then the
        backlog, then the live pushes that waited. Each push with a cursor goes out
        only if it is past the last one delivered, so the three overlap harmlessly:
        alone, the backlog is all there is and its entries the client had are
        skipped; in a cluster, the backlog adds its cursor-less entries (and, when
        the stream could not be read, the rest).
        """
        backlog = list(p.backlog)
        p.backlog.clear()
        complete = resumed and not p.dropped
        p.cursor = after
        pushes: list[Push] = []
        waiting: list[Push] = []
        if self.broker.sequenced:
            p.since = (0, 0)  # a hand-over of what another process queued adds nothing
            p.replaying = waiting
            try:
                replayed = await self.broker.replay(after)
            finally:
                p.replaying = None
            if self._presences.get(p.session_id) is not p:  # it left (or moved) meanwhile
                return False
            pushes = [push for audience, push in replayed.pushes if audience(p)]
            complete = replayed.complete
        for push in itertools.chain(pushes, backlog, waiting):
            self._deliver(p, push)
        return complete

    async def detach(self, conn: Connection) -> None:
        """The socket of ``conn`` is gone: start the grace window (or leave now)."""
        p = conn.presence
        conn.presence = None
        if p is None or p.conn is not conn:
            return
        p.conn = None
        if conn.deliberate_leave:
            await self._leave(p)
            return
        if self._settings.reconnect_grace <= 0:
            await self._leave(p)
            return
        p.disconnected_at = self._clock()

    async def set_character(self, session_id: int, character: CharacterInfo | None) -> None:
        """The session selected another character (or none): leave as the old, join as new."""
        p = self._presences.get(session_id)
        if p is None:
            return
        if p.character is not None and (character is None or character.id != p.character.id):
            await self._announce_left(p)
            for hook in self._leave_hooks:
                await self._run_hook(hook, p)
        old = p.character
        self.index.set_character(p, character)
        if character is not None and (old is None or old.id != character.id):
            await self._joined(p)

    def update_character(self, character_id: int, **changes: Any) -> None:
        """Update the hub's view of a character (``location_id``, ``level``, ...)."""
        for p in list(self._by_character.get(character_id, {}).values()):
            if p.character is not None:
                before = p.character.location_id
                self.index.set_character(p, replace(p.character, **changes))
                if p.character.location_id != before:
                    self.broker.moved(p)

    async def character_deleted(self, character_id: int) -> None:
        for p in list(self._presences.values()):
            if p.character is not None and p.character.id == character_id:
                await self.set_character(p.session_id, None)

    async def end_session(self, session_id: int, *, reason: str = "logged out") -> None:
        """Logout or expiry: close the connection (if any) and leave now."""
        p = self._presences.get(session_id)
        if p is None:
            return
        conn = p.conn
        if conn is not None:
            conn.presence = None
            p.conn = None
            code = CLOSE_NORMAL if reason == "logged out" else CLOSE_POLICY
            conn.close(code, reason)
        await self._leave(p)

    async def expire(self) -> int:
        """Drop presences whose reconnect grace ran out; return how many left."""
        now = self._clock()
        grace = self._settings.reconnect_grace
        gone = 0
        for p in list(self._presences.values()):
            if (
                p.conn is None
                and p.disconnected_at is not None
                and now - p.disconnected_at >= grace
            ):
                await self._leave(p)
                gone += 1
        return gone

    def handed_over(self, session_id: int, push: Push) -> bool:
        """A push another process had queued for ``session_id`` before it moved here:
        deliver it unless it was handled here already (its cursor is at or after the
        presence's :attr:`Presence.since`). True if delivered."""
        p = self._presences.get(session_id)
        if p is None:
            return False
        key, since = push.key, p.since
        if key is not None and since is not None and key >= since:
            return False
        conn = p.conn
        if conn is not None:
            return conn.send_text(push.stamped() if p.stamps else push.text)
        return bool(self._queue(p, push))

    def hand_over(self, session_id: int) -> list[Push]:
        """Another lobby process now holds ``session_id``: drop ours and return its backlog.

        No leave announcement and no leave hooks: the player is still online, elsewhere.
        A connection of it still open here is closed as replaced (4000).
        """
        p = self._presences.get(session_id)
        if p is None:
            return []
        self.index.remove(p)
        conn = p.conn
        if conn is not None:
            conn.presence = None
            p.conn = None
            conn.close(CLOSE_REPLACED, "replaced by a connection of this session elsewhere")
        backlog = list(p.backlog)
        p.backlog.clear()
        return backlog

    async def close_all(self) -> None:
        """Shutdown: close every connection with 1001 and wait until each has closed."""
        conns = self.connections()
        for conn in conns:
            conn.send(DisconnectMessage(reason="lobby shutting down"))
            conn.close(CLOSE_GOING_AWAY, "lobby shutting down")
        for conn in conns:
            await conn.wait_closed()
        self.index.clear()

    # -- dispatch ---------------------------------------------------------------------------

    async def dispatch(self, conn: Connection, msg: BaseMessage) -> None:
        """Run the handler registered for ``msg.type`` (ERROR bad_request if none)."""
        handler = self._handlers.get(MessageType(msg.type))
        if handler is None:
            raise LobbyError(
                f"the lobby does not handle {msg.type} messages",
                code=ErrorCode.BAD_REQUEST,
                details={"type": str(msg.type)},
            )
        await handler(conn, msg)

    # -- internals --------------------------------------------------------------------------

    def _text(self, msg: BaseMessage) -> str:
        if msg.timestamp is None:
            msg.timestamp = self._clock()
        return serialize(msg)

    def _push(self, msg: BaseMessage) -> Push:
        """``msg`` encoded, with this process's next cursor when the process is the whole
        lobby (in a cluster the stream gives the cursors; a local push has none)."""
        text = self._text(msg)
        if self.broker.distributed:
            return Push(text)
        n = next(self._pushes)
        return Push(text, f"{self._epoch}-{n}", (self._epoch, n))

    def _sequence(self, msg: BaseMessage, audience: Audience, here: list[Presence]) -> int:
        """Hand ``msg`` for ``audience`` to the sequenced broker; ``here`` are the local
        presences that may be of it (they get it when it comes back from the stream).
        Returns how many are reached: the local ones that will take it, or else the
        other processes it went to."""
        text = self._text(msg)
        if audience.kind is AudienceKind.EVERYONE and audience.exclude_character is None:
            # everyone here (a count, not a scan: the delivery scans them once, later)
            count = len(here) - (audience.exclude_session in self._presences)
        else:
            count = sum(1 for p in here if audience(p) and self._reachable(p))
        elsewhere = self.broker.forward(audience, text, here=bool(count))
        count = count or elsewhere
        self.metrics.sent(msg.type, count)
        return count

    def _deliver_each(self, presences: Iterable[Presence], audience: Audience, push: Push) -> int:
        return sum(self._deliver(p, push) for p in list(presences) if audience(p))

    def _reachable(self, p: Presence) -> bool:
        return p.conn is not None or (
            p.disconnected_at is not None and self._settings.ws_backlog_max > 0
        )

    def _deliver(self, p: Presence, push: Push) -> int:
        key = push.key
        if key is not None:
            last = p.cursor
            if last is not None and key <= last:
                return 0  # replayed already (or the client had it when it resumed)
            if p.replaying is not None:
                p.replaying.append(push)
                return 1
            p.cursor = key
            if p.since is None:
                p.since = key
        conn = p.conn
        if conn is not None:
            return int(conn.send_text(push.stamped() if p.stamps else push.text))
        return self._queue(p, push)

    def _queue(self, p: Presence, push: Push) -> int:
        if p.disconnected_at is None or self._settings.ws_backlog_max <= 0:
            return 0
        if len(p.backlog) >= self._settings.ws_backlog_max:
            p.backlog.popleft()
            p.dropped += 1
        p.backlog.append(push)
        return 1

    async def _joined(self, p: Presence) -> None:
        character = p.character
        if character is None:
            return
        if self.announce_presence:
            self.broadcast_to_location(
                character.location_id,
                PlayerJoinedAreaMessage(
                    character_id=character.id,
                    character_name=character.name,
                    location_id=character.location_id,
                    level=character.level,
                    faction=character.faction,
                ),
                exclude_session=p.session_id,
            )
        for hook in self._join_hooks:
            await self._run_hook(hook, p)

    async def _leave(self, p: Presence) -> None:
        if not self.index.remove(p):
            return
        p.backlog.clear()
        if p.character is not None:
            await self._announce_left(p)
        for hook in self._leave_hooks:
            await self._run_hook(hook, p)

    async def _announce_left(self, p: Presence) -> None:
        character = p.character
        if character is None or not self.announce_presence:
            return
        self.broadcast_to_location(
            character.location_id,
            PlayerLeftAreaMessage(
                character_id=character.id,
                character_name=character.name,
                location_id=character.location_id,
            ),
            exclude_session=p.session_id,
        )

    async def _run_hook(self, hook: PresenceHook, p: Presence) -> None:
        try:
            await hook(p)
        except Exception:
            log.exception("presence hook %r failed for session=%d", hook, p.session_id)


def _same_session(p: Presence, account_id: int, token_hash: str) -> bool:
    return p.account_id == account_id and hmac.compare_digest(p.resume_key, token_hash)
