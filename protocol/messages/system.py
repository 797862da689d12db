"""System messages: ERROR, HEARTBEAT and ACK."""

from __future__ import annotations

from typing import Literal

from pydantic import field_serializer

from protocol.errors import ErrorCode
from protocol.messages.base import BaseMessage, Details, MessageId, MessageType, Text, Time

__all__ = ["AckMessage", "ErrorMessage", "HeartbeatMessage"]


class ErrorMessage(BaseMessage):
    """A request or message was refused: a stable ``error_code`` and a readable text.

    ``ref_id`` is the ``message_id`` of the message that caused it, when known.
    """

    type: Literal[MessageType.ERROR] = MessageType.ERROR
    error_code: ErrorCode
    error_message: Text
    details: Details | None = None
    ref_id: MessageId | None = None

    @field_serializer("error_code", when_used="json")
    def _code_as_text(self, value: ErrorCode) -> str:
        return value._value_  # the plain string: pydantic's enum path is slower


class HeartbeatMessage(BaseMessage):
    """Keep-alive; ``reply_to`` echoes a heartbeat's id so the sender can measure RTT."""

    type: Literal[MessageType.HEARTBEAT] = MessageType.HEARTBEAT
    sent_at: Time | None = None
    reply_to: MessageId | None = None


class AckMessage(BaseMessage):
    """Generic acknowledgement of a client request (``ref_id``), with an optional result."""

    type: Literal[MessageType.ACK] = MessageType.ACK
    ref_id: MessageId
    ok: bool = True
    details: Details | None = None
