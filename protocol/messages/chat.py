"""Chat messages: CHAT, WHISPER, PARTY_CHAT, FACTION_CHAT, WORLD_ANNOUNCEMENT.

All share the seed's fields ``sender_id``, ``sender_name``, ``content`` and ``channel``.
A receiver never trusts ``sender_id`` on its word: the lobby overwrites it from the
session, a peer from the authenticated handshake.
"""

from __future__ import annotations

from typing import Literal

from protocol.messages.base import (
    BaseMessage,
    Channel,
    ChatText,
    Id,
    MessageType,
    Name,
    RefId,
)

__all__ = [
    "ChatMessage",
    "ChatLikeMessage",
    "FactionChatMessage",
    "PartyChatMessage",
    "WhisperMessage",
    "WorldAnnouncementMessage",
]


class ChatLikeMessage(BaseMessage):
    """Fields shared by every chat message (not itself a wire type)."""

    sender_id: Id | None = None
    sender_name: Name | None = None
    content: ChatText
    channel: Channel = "global"


class ChatMessage(ChatLikeMessage):
    """Global (or named channel) chat, relayed by the lobby."""

    type: Literal[MessageType.CHAT] = MessageType.CHAT


class WhisperMessage(ChatLikeMessage):
    """A private message to one character, sent peer to peer when possible."""

    type: Literal[MessageType.WHISPER] = MessageType.WHISPER
    channel: Channel = "whisper"
    target_id: Id | None = None
    target_name: Name | None = None


class PartyChatMessage(ChatLikeMessage):
    """Chat to the sender's party, sent peer to peer when possible."""

    type: Literal[MessageType.PARTY_CHAT] = MessageType.PARTY_CHAT
    channel: Channel = "party"
    party_id: RefId | None = None


class FactionChatMessage(ChatLikeMessage):
    """Chat to the sender's faction, relayed by the lobby."""

    type: Literal[MessageType.FACTION_CHAT] = MessageType.FACTION_CHAT
    channel: Channel = "faction"
    faction: Name | None = None


class WorldAnnouncementMessage(ChatLikeMessage):
    """A server-wide announcement."""

    type: Literal[MessageType.WORLD_ANNOUNCEMENT] = MessageType.WORLD_ANNOUNCEMENT
    channel: Channel = "announcement"
    priority: Literal["info", "warning", "critical"] = "info"
