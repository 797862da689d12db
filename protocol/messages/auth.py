"""Authentication and session messages: AUTH_REQUEST, AUTH_RESPONSE, DISCONNECT."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Strict, StringConstraints

from protocol.messages.base import BaseMessage, Id, MessageType, Name, ShortText, Time, Token

__all__ = ["AuthRequestMessage", "AuthResponseMessage", "DisconnectMessage"]

Password = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=256)]


class AuthRequestMessage(BaseMessage):
    """Log in with a username and password, or authenticate a connection with a session token."""

    type: Literal[MessageType.AUTH_REQUEST] = MessageType.AUTH_REQUEST
    username: Name | None = None
    password: Password | None = None
    session_token: Token | None = None


class AuthResponseMessage(BaseMessage):
    """The outcome of an AUTH_REQUEST."""

    type: Literal[MessageType.AUTH_RESPONSE] = MessageType.AUTH_RESPONSE
    success: bool
    player_id: Id | None = None
    username: Name | None = None
    session_token: Token | None = None
    expires_at: Time | None = None
    message: ShortText | None = None


class DisconnectMessage(BaseMessage):
    """The sender is closing the connection (or the server closes it), with a reason."""

    type: Literal[MessageType.DISCONNECT] = MessageType.DISCONNECT
    reason: ShortText | None = None
