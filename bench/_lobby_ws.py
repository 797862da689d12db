"""Lobby WebSocket clients for the fan-out and connection benchmarks.

Tokens come from real REST registrations and logins: one session (login) per connection, as
the lobby keeps one WebSocket per session, and ``PER_ACCOUNT`` sessions per account (the
lobby's default ``ws_connections_per_account``). Client 0's session has a selected character so
it may send chat; everyone receives it.
"""

from __future__ import annotations

import math
from typing import Any

from bench._lobby import BENCH_LIMITS, FAST_HASH, make_accounts, make_character
from bench._wsgen import STAMP_FORMAT

__all__ = ["PER_ACCOUNT", "chat_text", "lobby_ws_settings", "lobby_ws_specs"]

PER_ACCOUNT = 8


def lobby_ws_settings(n: int) -> dict[str, Any]:
    """Lobby settings for ``n`` benchmark WebSockets from one address."""
    return {
        **BENCH_LIMITS,
        **FAST_HASH,
        "ws_connections_per_account": PER_ACCOUNT,
        "ws_message_rate": 1e6,
        "ws_message_burst": 1e6,
        "chat_rate": 1e6,
        "chat_burst": 1e6,
    }


def lobby_ws_specs(port: int, n: int, *, prefix: str) -> list[dict[str, Any]]:
    """``n`` client specs with real session tokens; client 0 may chat."""
    tokens = make_accounts(
        port, math.ceil(n / PER_ACCOUNT), prefix=prefix, sessions_per_account=PER_ACCOUNT
    )
    make_character(port, tokens[0], f"{prefix.capitalize()}Sender")
    return [{"path": f"/ws?token={token}"} for token in tokens[:n]]


def chat_text() -> str:
    """A CHAT message whose content carries the send-time stamp placeholder."""
    return '{"type":"chat","content":"hello everyone ' + STAMP_FORMAT.format("{ns}") + '"}'
