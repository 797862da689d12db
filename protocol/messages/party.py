"""Party messages: PARTY_CREATE, _INVITE, _ACCEPT, _DECLINE, _LEAVE, _KICK, _DISBAND, _UPDATE."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from protocol.messages.base import (
    BaseMessage,
    Id,
    Level,
    MessageType,
    Name,
    RefId,
    ShortText,
    StrictModel,
)

__all__ = [
    "MAX_PARTY_MEMBERS",
    "PartyAcceptMessage",
    "PartyCreateMessage",
    "PartyDeclineMessage",
    "PartyDisbandMessage",
    "PartyInviteMessage",
    "PartyKickMessage",
    "PartyLeaveMessage",
    "PartyMember",
    "PartyUpdateMessage",
]

MAX_PARTY_MEMBERS = 16


class PartyMember(StrictModel):
    """One member as shown in PARTY_UPDATE."""

    character_id: Id
    character_name: Name
    level: Level | None = None
    location_id: Id | None = None
    is_leader: bool = False
    online: bool = True


class PartyCreateMessage(BaseMessage):
    """Create a party (request) or announce its creation (``party_id`` set)."""

    type: Literal[MessageType.PARTY_CREATE] = MessageType.PARTY_CREATE
    party_id: RefId | None = None
    leader_id: Id | None = None
    name: Name | None = None


class PartyInviteMessage(BaseMessage):
    """Invite a character (by id or name) to a party."""

    type: Literal[MessageType.PARTY_INVITE] = MessageType.PARTY_INVITE
    party_id: RefId | None = None
    inviter_id: Id | None = None
    inviter_name: Name | None = None
    target_id: Id | None = None
    target_name: Name | None = None


class PartyAcceptMessage(BaseMessage):
    """Accept a party invitation."""

    type: Literal[MessageType.PARTY_ACCEPT] = MessageType.PARTY_ACCEPT
    party_id: RefId
    character_id: Id | None = None


class PartyDeclineMessage(BaseMessage):
    """Decline a party invitation."""

    type: Literal[MessageType.PARTY_DECLINE] = MessageType.PARTY_DECLINE
    party_id: RefId
    character_id: Id | None = None
    reason: ShortText | None = None


class PartyLeaveMessage(BaseMessage):
    """Leave the party."""

    type: Literal[MessageType.PARTY_LEAVE] = MessageType.PARTY_LEAVE
    party_id: RefId | None = None
    character_id: Id | None = None


class PartyKickMessage(BaseMessage):
    """The leader removes a member."""

    type: Literal[MessageType.PARTY_KICK] = MessageType.PARTY_KICK
    party_id: RefId | None = None
    target_id: Id
    reason: ShortText | None = None


class PartyDisbandMessage(BaseMessage):
    """The party no longer exists."""

    type: Literal[MessageType.PARTY_DISBAND] = MessageType.PARTY_DISBAND
    party_id: RefId
    reason: ShortText | None = None


class PartyUpdateMessage(BaseMessage):
    """The party's full current state."""

    type: Literal[MessageType.PARTY_UPDATE] = MessageType.PARTY_UPDATE
    party_id: RefId
    name: Name | None = None
    leader_id: Id | None = None
    members: list[PartyMember] = Field(default_factory=list, max_length=MAX_PARTY_MEMBERS)
