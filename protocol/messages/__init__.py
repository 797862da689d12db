"""Every message model, the discriminated union :data:`Message` and :data:`MESSAGE_TYPES`.

Split by area: :mod:`.base` (envelope, types), :mod:`.auth`, :mod:`.characters`,
:mod:`.location` (movement), :mod:`.chat`, :mod:`.party`, :mod:`.combat`,
:mod:`.world`, :mod:`.trade`, :mod:`.peer` (mesh) and :mod:`.system` (error, heartbeat, ack).
"""

from __future__ import annotations

from typing import Annotated, TypeAlias, Union, get_args

from pydantic import Field

from protocol.messages import (
    auth,
    characters,
    chat,
    combat,
    location,
    party,
    peer,
    system,
    trade,
    world,
)
from protocol.messages.auth import *  # noqa: F403
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
from protocol.messages.characters import *  # noqa: F403
from protocol.messages.chat import *  # noqa: F403
from protocol.messages.combat import *  # noqa: F403
from protocol.messages.location import *  # noqa: F403
from protocol.messages.party import *  # noqa: F403
from protocol.messages.peer import *  # noqa: F403
from protocol.messages.system import *  # noqa: F403
from protocol.messages.trade import *  # noqa: F403
from protocol.messages.world import *  # noqa: F403

# Each area states its models and limits once, in its own ``__all__``.
__all__ = [
    "COORD_LIMIT",
    "MAX_CHAT_LENGTH",
    "MAX_MESSAGE_SIZE",
    "MESSAGE_TYPES",
    "BaseMessage",
    "Handler",
    "Message",
    "MessageType",
    "StrictModel",
    "new_message_id",
]
__all__ += auth.__all__
__all__ += characters.__all__
__all__ += chat.__all__
__all__ += combat.__all__
__all__ += location.__all__
__all__ += party.__all__
__all__ += peer.__all__
__all__ += system.__all__
__all__ += trade.__all__
__all__ += world.__all__

# Order follows MessageType; the union is discriminated by ``type``.
Message: TypeAlias = Annotated[
    Union[  # noqa: UP007
        auth.AuthRequestMessage,
        auth.AuthResponseMessage,
        auth.DisconnectMessage,
        characters.CharacterListMessage,
        characters.CharacterSelectMessage,
        characters.CharacterCreateMessage,
        characters.CharacterUpdateMessage,
        characters.CharacterDeleteMessage,
        location.MoveMessage,
        location.LocationUpdateMessage,
        location.PlayerJoinedAreaMessage,
        location.PlayerLeftAreaMessage,
        location.PositionUpdateMessage,
        chat.ChatMessage,
        chat.WhisperMessage,
        chat.PartyChatMessage,
        chat.FactionChatMessage,
        chat.WorldAnnouncementMessage,
        party.PartyCreateMessage,
        party.PartyInviteMessage,
        party.PartyAcceptMessage,
        party.PartyDeclineMessage,
        party.PartyLeaveMessage,
        party.PartyKickMessage,
        party.PartyDisbandMessage,
        party.PartyUpdateMessage,
        combat.CombatStartMessage,
        combat.CombatActionMessage,
        combat.CombatDamageMessage,
        combat.CombatHealMessage,
        combat.CombatEndMessage,
        combat.CombatStateMessage,
        world.WorldStateMessage,
        world.ShardCapturedMessage,
        world.ShardStatusMessage,
        world.ShardCaptureMessage,
        world.RealityShiftMessage,
        world.AetherfallMessage,
        trade.TradeRequestMessage,
        trade.TradeAcceptMessage,
        trade.TradeDeclineMessage,
        trade.TradeUpdateMessage,
        trade.TradeCompleteMessage,
        peer.PeerHelloMessage,
        peer.PeerProofMessage,
        peer.PeerWelcomeMessage,
        peer.PeerAckMessage,
        peer.PeerInfoMessage,
        peer.RelayMessage,
        system.ErrorMessage,
        system.HeartbeatMessage,
        system.AckMessage,
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
