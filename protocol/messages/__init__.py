"""Every message model, the discriminated union :data:`Message` and :data:`MESSAGE_TYPES`.

Split by area: :mod:`.base` (envelope, types), :mod:`.auth`, :mod:`.characters`,
:mod:`.location` (movement), :mod:`.chat`, :mod:`.party`, :mod:`.combat`,
:mod:`.world`, :mod:`.trade`, :mod:`.peer` (mesh) and :mod:`.system` (error, heartbeat, ack).
"""

from __future__ import annotations

from typing import Annotated, TypeAlias, Union, get_args

from pydantic import Field

from protocol.messages.auth import AuthRequestMessage, AuthResponseMessage, DisconnectMessage
from protocol.messages.base import (
    COORD_LIMIT,
    MAX_CHAT_LENGTH,
    MAX_MESSAGE_SIZE,
    BaseMessage,
    Handler,
    MessageType,
    StrictModel,
    new_message_id,
)
from protocol.messages.characters import (
    CharacterCreateMessage,
    CharacterDeleteMessage,
    CharacterListMessage,
    CharacterSelectMessage,
    CharacterSummary,
    CharacterUpdateMessage,
)
from protocol.messages.chat import (
    ChatLikeMessage,
    ChatMessage,
    FactionChatMessage,
    PartyChatMessage,
    WhisperMessage,
    WorldAnnouncementMessage,
)
from protocol.messages.combat import (
    ActionType,
    CombatActionMessage,
    Combatant,
    CombatDamageMessage,
    CombatEndMessage,
    CombatHealMessage,
    CombatStartMessage,
    CombatStateMessage,
)
from protocol.messages.location import (
    LocationUpdateMessage,
    MoveMessage,
    PlayerJoinedAreaMessage,
    PlayerLeftAreaMessage,
    PositionUpdateMessage,
    Vec3,
)
from protocol.messages.party import (
    PartyAcceptMessage,
    PartyCreateMessage,
    PartyDeclineMessage,
    PartyDisbandMessage,
    PartyInviteMessage,
    PartyKickMessage,
    PartyLeaveMessage,
    PartyMember,
    PartyUpdateMessage,
)
from protocol.messages.peer import (
    PeerAckMessage,
    PeerHelloMessage,
    PeerInfoMessage,
    PeerProofMessage,
    PeerWelcomeMessage,
    RelayMessage,
)
from protocol.messages.system import AckMessage, ErrorMessage, HeartbeatMessage
from protocol.messages.trade import (
    TradeAcceptMessage,
    TradeCompleteMessage,
    TradeDeclineMessage,
    TradeItem,
    TradeOffer,
    TradeRequestMessage,
    TradeUpdateMessage,
)
from protocol.messages.world import (
    AetherfallMessage,
    RealityShiftMessage,
    ShardCapturedMessage,
    ShardCaptureMessage,
    ShardInfo,
    ShardStatusMessage,
    WorldEvent,
    WorldStateMessage,
)

__all__ = [
    "COORD_LIMIT",
    "MAX_CHAT_LENGTH",
    "MAX_MESSAGE_SIZE",
    "MESSAGE_TYPES",
    "AckMessage",
    "ActionType",
    "AetherfallMessage",
    "AuthRequestMessage",
    "AuthResponseMessage",
    "BaseMessage",
    "CharacterCreateMessage",
    "CharacterDeleteMessage",
    "CharacterListMessage",
    "CharacterSelectMessage",
    "CharacterSummary",
    "CharacterUpdateMessage",
    "ChatLikeMessage",
    "ChatMessage",
    "CombatActionMessage",
    "CombatDamageMessage",
    "CombatEndMessage",
    "CombatHealMessage",
    "CombatStartMessage",
    "CombatStateMessage",
    "Combatant",
    "DisconnectMessage",
    "ErrorMessage",
    "FactionChatMessage",
    "HeartbeatMessage",
    "LocationUpdateMessage",
    "Message",
    "MessageType",
    "MoveMessage",
    "PartyAcceptMessage",
    "PartyChatMessage",
    "PartyCreateMessage",
    "PartyDeclineMessage",
    "PartyDisbandMessage",
    "PartyInviteMessage",
    "PartyKickMessage",
    "PartyLeaveMessage",
    "PartyMember",
    "PartyUpdateMessage",
    "PeerAckMessage",
    "PeerHelloMessage",
    "PeerInfoMessage",
    "PeerProofMessage",
    "PeerWelcomeMessage",
    "PlayerJoinedAreaMessage",
    "PlayerLeftAreaMessage",
    "PositionUpdateMessage",
    "RealityShiftMessage",
    "RelayMessage",
    "ShardCaptureMessage",
    "ShardCapturedMessage",
    "ShardInfo",
    "ShardStatusMessage",
    "Handler",
    "StrictModel",
    "TradeAcceptMessage",
    "TradeCompleteMessage",
    "TradeDeclineMessage",
    "TradeItem",
    "TradeOffer",
    "TradeRequestMessage",
    "TradeUpdateMessage",
    "Vec3",
    "WhisperMessage",
    "WorldAnnouncementMessage",
    "WorldEvent",
    "WorldStateMessage",
    "new_message_id",
]

# Order follows MessageType; the union is discriminated by ``type``.
Message: TypeAlias = Annotated[
    Union[  # noqa: UP007
        AuthRequestMessage,
        AuthResponseMessage,
        DisconnectMessage,
        CharacterListMessage,
        CharacterSelectMessage,
        CharacterCreateMessage,
        CharacterUpdateMessage,
        CharacterDeleteMessage,
        MoveMessage,
        LocationUpdateMessage,
        PlayerJoinedAreaMessage,
        PlayerLeftAreaMessage,
        PositionUpdateMessage,
        ChatMessage,
        WhisperMessage,
        PartyChatMessage,
        FactionChatMessage,
        WorldAnnouncementMessage,
        PartyCreateMessage,
        PartyInviteMessage,
        PartyAcceptMessage,
        PartyDeclineMessage,
        PartyLeaveMessage,
        PartyKickMessage,
        PartyDisbandMessage,
        PartyUpdateMessage,
        CombatStartMessage,
        CombatActionMessage,
        CombatDamageMessage,
        CombatHealMessage,
        CombatEndMessage,
        CombatStateMessage,
        WorldStateMessage,
        ShardCapturedMessage,
        ShardStatusMessage,
        ShardCaptureMessage,
        RealityShiftMessage,
        AetherfallMessage,
        TradeRequestMessage,
        TradeAcceptMessage,
        TradeDeclineMessage,
        TradeUpdateMessage,
        TradeCompleteMessage,
        PeerHelloMessage,
        PeerProofMessage,
        PeerWelcomeMessage,
        PeerAckMessage,
        PeerInfoMessage,
        RelayMessage,
        ErrorMessage,
        HeartbeatMessage,
        AckMessage,
    ],
    Field(discriminator="type"),
]
"""Any message; pydantic picks the model from the ``type`` field."""


def _build_registry() -> dict[MessageType, type[BaseMessage]]:
    registry: dict[MessageType, type[BaseMessage]] = {}
    for cls in get_args(get_args(Message)[0]):
        message_type = cls.model_fields["type"].default
        registry[MessageType(message_type)] = cls
    missing = set(MessageType) - set(registry)
    if missing:  # pragma: no cover - a programming error caught at import
        raise RuntimeError(f"message types without a model: {sorted(missing)}")
    return registry


MESSAGE_TYPES: dict[MessageType, type[BaseMessage]] = _build_registry()
"""The model of each message type."""
