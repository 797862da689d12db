"""One QUIC connection of the node and what the mesh keeps about it (sans-I/O)."""

from __future__ import annotations

import logging
from typing import Any

from aioquic.quic.connection import QuicConnection

from mesh import _quicshim
from mesh.auth import PeerIdentity
from mesh.handshake import CloseCode, Handshake
from mesh.streams import KIND_CONTROL, KIND_DATA, FrameDecoder, encode_frame
from protocol.codec import serialize_bytes
from protocol.messages.base import BaseMessage

__all__ = ["Address", "Link"]

Address = tuple[Any, ...]
"""A socket address as ``recvfrom`` returns it (``(host, port)`` for IPv4)."""

logger = logging.getLogger("mesh.link")


class Link:
    """A QUIC connection, its handshake, its control stream and its peer once known."""

    def __init__(
        self,
        quic: QuicConnection,
        addr: Address,
        *,
        is_client: bool,
        handshake: Handshake,
        now: float,
        dial_deadline: float,
        dial_id: int | None = None,
    ) -> None:
        self.quic = quic
        self.addr = addr
        self.is_client = is_client
        self.handshake = handshake
        self.dial_id = dial_id
        self.dial_deadline: float | None = dial_deadline
        self.cids: set[bytes] = set()
        self.decoder = FrameDecoder()
        self.stream_id: int | None = quic.get_next_available_stream_id() if is_client else None
        self.identity: PeerIdentity | None = None
        self.authenticated = False
        self.terminated = False
        self.closing = False
        self.close_code: int | None = None
        self.active = False
        self.next_ping_at: float | None = None
        self.last_activity = now
        self.last_rx = now
        self.expected_peer_id: str | None = None

    @property
    def peer_id(self) -> str | None:
        """The authenticated peer's id (None before authentication)."""
        return self.identity.peer_id if self.identity is not None else None

    def send_control(self, message: BaseMessage) -> None:
        """Send a protocol message in a CONTROL frame on the control stream."""
        self._send(encode_frame(KIND_CONTROL, serialize_bytes(message)))

    def send_data(self, body: bytes) -> None:
        """Send a DATA frame body on the control stream."""
        self._send(encode_frame(KIND_DATA, body))

    def _send(self, frame: bytes) -> None:
        if self.stream_id is None or self.closing or self.terminated:
            return
        self.quic.send_stream_data(self.stream_id, frame)

    def close(self, code: CloseCode, reason: str) -> None:
        """Close the QUIC connection with an application error code (idempotent)."""
        if self.closing or self.terminated:
            return
        self.closing = True
        self.close_code = int(code)
        self.quic.close(error_code=int(code), reason_phrase=reason[:200])

    def timer(self) -> float | None:
        """When this link needs :meth:`handle_timer` (QUIC, dial deadline or keepalive)."""
        times: list[float] = []
        if not self.terminated and _quicshim.timer_ready(self.quic):
            qt = self.quic.get_timer()
            if qt is not None:
                times.append(qt)
        if not self.closing and not self.terminated:
            if self.dial_deadline is not None and not self.authenticated:
                times.append(self.dial_deadline)
            if self.next_ping_at is not None:
                times.append(self.next_ping_at)
        return min(times) if times else None

    def describe(self) -> str:
        """Short text for log lines: peer id (or address) and role."""
        who = self.identity.peer_id[:12] if self.identity is not None else "?"
        role = "out" if self.is_client else "in"
        return f"{who}@{self.addr[0]}:{self.addr[1]}/{role}"
