"""Chat through the lobby: CHAT (global), FACTION_CHAT and WORLD_ANNOUNCEMENT.

The lobby never trusts a client's ``sender_id`` / ``sender_name``: it sets them
from the session's selected character. A connection without a selected
character receives chat but may not send it (``ERROR no_character``).

* ``CHAT``: to every presence (the sender included; the copy keeps the client's
  ``message_id`` so the sender can match it), ``channel`` is always ``global``.
* ``FACTION_CHAT``: only to presences whose character is of the sender's
  faction (``faction`` set by the lobby).
* ``WORLD_ANNOUNCEMENT``: only from an account listed in ``admin_accounts``
  (``ERROR forbidden`` otherwise), to every presence; the sender name is the
  admin's character or username. An admin needs no character for it.

In a cluster (``redis_url``) a chat is also safe to retry across a failover: the
sender's own copy (its acknowledgement) is sent only once the chat has left for the
other processes, so a copy the sender saw is never one the others miss; and a chat
re-sent with the same ``message_id`` within ``CHAT_RETRY_WINDOW`` seconds (say,
after the sender's process died before its copy came back, and the sender
reconnected elsewhere) is recognized: the sender gets its copy again, nobody else
gets it twice. A chat whose copy never came back, on a socket that closed, is thus
either re-sent (delivered exactly once) or known to the sender as not confirmed:
never silently lost.

Limits: ``chat_max_length`` characters (``announcement_max_length`` for
announcements), blank text refused (``ERROR validation_error``), and
``chat_rate`` / ``chat_burst`` messages per account, one budget for every lobby
process of a cluster (``ERROR rate_limited`` with ``details.retry_after``).
Messages inside a reconnect grace are queued.
"""

from __future__ import annotations

import logging

from lobby.broker import Audience
from lobby.connection import Connection
from lobby.context import ContextSlot, LobbyContext
from lobby.presence import CharacterInfo
from lobby.ratelimit import SharedRateLimiter
from protocol.errors import ErrorCode, LobbyError
from protocol.messages import (
    ChatMessage,
    FactionChatMessage,
    MessageType,
    WorldAnnouncementMessage,
)

__all__ = ["CHAT_RETRY_WINDOW", "ChatService"]

CHAT_RETRY_WINDOW = 120.0
"""Seconds a cluster remembers a chat's ``message_id`` to recognize a retry of it."""

log = logging.getLogger("lobby.chat")


class ChatService:
    """Registers the chat handlers on the hub."""

    name = "chat"

    def __init__(self) -> None:
        self._slot = ContextSlot("chat")
        self._limiter: SharedRateLimiter | None = None

    async def setup(self, ctx: LobbyContext) -> None:
        self._slot.attach(ctx)
        self._limiter = SharedRateLimiter(
            "chat", ctx.settings.chat_rate, ctx.settings.chat_burst, ctx.clock, ctx.buckets
        )
        ctx.hub.register(MessageType.CHAT, self.on_chat)
        ctx.hub.register(MessageType.FACTION_CHAT, self.on_faction_chat)
        ctx.hub.register(MessageType.WORLD_ANNOUNCEMENT, self.on_announcement)

    async def close(self) -> None:
        self._slot.detach()

    async def on_chat(self, conn: Connection, msg: ChatMessage) -> None:
        ctx = self._slot.ctx
        speaker = _speaker(conn)
        content = _text(msg.content, ctx.settings.chat_max_length)
        chat = ChatMessage(
            message_id=msg.message_id,
            sender_id=speaker.id,
            sender_name=speaker.name,
            content=content,
            channel="global",
        )
        await self._say(conn, chat, Audience.everyone())

    async def on_faction_chat(self, conn: Connection, msg: FactionChatMessage) -> None:
        ctx = self._slot.ctx
        speaker = _speaker(conn)
        content = _text(msg.content, ctx.settings.chat_max_length)
        faction = speaker.faction
        chat = FactionChatMessage(
            message_id=msg.message_id,
            sender_id=speaker.id,
            sender_name=speaker.name,
            content=content,
            faction=faction,
        )
        await self._say(conn, chat, Audience.faction(faction))

    async def on_announcement(self, conn: Connection, msg: WorldAnnouncementMessage) -> None:
        ctx = self._slot.ctx
        if not conn.session.is_admin:
            raise LobbyError("only an admin account may announce", code=ErrorCode.FORBIDDEN)
        content = _text(msg.content, ctx.settings.announcement_max_length)
        await self._rate(conn)
        character = conn.character
        log.info("%s world announcement (%d chars)", conn.describe(), len(content))
        ctx.hub.broadcast(
            WorldAnnouncementMessage(
                message_id=msg.message_id,
                sender_id=character.id if character else None,
                sender_name=character.name if character else conn.session.username,
                content=content,
                priority=msg.priority,
            )
        )

    async def _say(
        self, conn: Connection, chat: ChatMessage | FactionChatMessage, audience: Audience
    ) -> None:
        """Check the budget and send ``chat`` to ``audience`` (the sender among them).

        Alone: one broadcast, as ever. In a cluster: a retry of a chat already sent
        (same account and ``message_id``: the cluster remembers it right behind the
        broadcast) only gives the sender its copy again; a new chat goes to the others
        first, and to the sender once it has left for the other processes (see the
        module docstring). A chat that never left (its process died first) is not
        remembered, so its retry is sent.
        """
        hub = self._slot.ctx.hub
        broker = hub.broker
        if not broker.distributed:
            await self._rate(conn)
            hub.broadcast(chat, where=audience)
            return
        sent = f"chat:{conn.account_id}:{chat.message_id}"
        if await broker.recalls(sent):
            log.info("%s re-sent chat %s: its copy again", conn.describe(), chat.message_id[:40])
            conn.send(chat)
            return
        await self._rate(conn)
        hub.broadcast(chat, where=audience, exclude_session=conn.session.id)
        broker.remember(sent, CHAT_RETRY_WINDOW)  # behind the broadcast, in order
        await broker.flushed()
        conn.send(chat)

    async def _rate(self, conn: Connection) -> None:
        assert self._limiter is not None  # noqa: S101
        wait = await self._limiter.hit(conn.account_id)
        if wait > 0:
            raise LobbyError(
                "chatting too fast",
                code=ErrorCode.RATE_LIMITED,
                details={"retry_after": round(wait, 3)},
            )


def _speaker(conn: Connection) -> CharacterInfo:
    character = conn.character
    if character is None:
        raise LobbyError("select a character before chatting", code=ErrorCode.NO_CHARACTER)
    return character


def _text(content: str, limit: int) -> str:
    if not content.strip():
        raise LobbyError("the message is empty", code=ErrorCode.VALIDATION_ERROR)
    if len(content) > limit:
        raise LobbyError(
            f"the message is longer than {limit} characters",
            code=ErrorCode.VALIDATION_ERROR,
            details={"limit": limit, "length": len(content)},
        )
    return content
