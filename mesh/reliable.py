"""Reliable delivery of :class:`mesh.core.MeshCore` (a mixin, sans-I/O).

Split from the core along the seam "connections" versus "messages": choosing a
path (direct connection, dial, relay), resending, acknowledgements, in-order
exactly-once delivery per sender epoch (:mod:`mesh.streams`), sealed relay
envelopes (:mod:`mesh.relay`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque

from mesh.auth import Authenticator, PeerIdentity
from mesh.config import MeshConfig
from mesh.events import CoreEvent, Path, RelayRequest, SendSettled
from mesh.link import Address, Link
from mesh.relay import open_envelope, parse_envelope, seal_envelope
from mesh.streams import (
    KIND_CONTROL,
    KIND_DATA,
    InboundChannel,
    OutboundChannel,
    Outgoing,
    decode_data,
)
from mesh.traffic import TrafficMixin
from protocol.codec import deserialize, serialize_bytes
from protocol.crypto import Identity
from protocol.errors import MeshError, PeerUnreachableError, ProtocolError
from protocol.messages.base import BaseMessage
from protocol.messages.peer import PeerAckMessage

__all__ = ["ReliableMixin"]

logger = logging.getLogger("mesh.core")

_MAX_EPOCHS_PER_PEER = 4


class ReliableMixin(TrafficMixin):
    """Paths, resends, acks and ordered delivery of reliable peer messages."""

    identity: Identity
    auth: Authenticator
    config: MeshConfig
    relay_enabled: bool
    wall_offset: float
    stats: dict[str, int]
    _closed: bool
    _events: deque[CoreEvent]
    _active: dict[str, Link]
    _known: dict[str, PeerIdentity]
    _endpoints: dict[str, Address]
    _redial_at: dict[str, float]
    _was_connected: set[str]
    _out: dict[str, OutboundChannel]
    _in: dict[str, OrderedDict[bytes, InboundChannel[BaseMessage]]]

    def _dial(self, addr: Address, peer_id: str | None, now: float) -> int:
        raise NotImplementedError

    def _dialing(self, peer_id: str) -> bool:
        raise NotImplementedError

    def _learn(self, identity: PeerIdentity) -> None:
        raise NotImplementedError

    def receive_relayed(self, data: bytes, now: float) -> None:
        """Take one relay envelope (from the relay transport); bad ones are dropped."""
        if self._closed:
            return
        try:
            credential, sealed = parse_envelope(data)
            sender = self.auth.verify_credential(credential, now=now + self.wall_offset)
            kind, body = open_envelope(sealed, sender=sender, recipient_key=self.identity.box_key)
            if sender.peer_id == self.identity.peer_id:
                raise ProtocolError("relayed frame from ourselves")
            self._learn(sender)
            if kind == KIND_DATA:
                self._on_data(sender, body, "relay", None, now)
            elif kind == KIND_CONTROL:
                ack = deserialize(body)
                if not isinstance(ack, PeerAckMessage):
                    raise ProtocolError("only PEER_ACK travels as a relayed control frame")
                self._on_ack(sender.peer_id, ack.ref_id, "relay")
            else:
                raise ProtocolError("unknown relayed frame kind")
        except (ProtocolError, ValueError) as exc:
            self.stats["bad_relay"] += 1
            logger.debug("relay envelope dropped: %s", exc)

    def _settle(self, out: Outgoing, path: Path | None, error: MeshError | None) -> None:
        self._events.append(SendSettled(out.handle, path, error))

    def _route(self, pid: str, outs: list[Outgoing], now: float) -> None:
        """Send ``outs`` to ``pid`` on the best path available now."""
        channel = self._out[pid]
        link = self._active.get(pid)
        if link is not None:
            for out in outs:
                link.send_data(channel.data_body(out))
                out.sent_direct_at = now
            return
        if self._dialing(pid):
            return
        endpoint = self._endpoints.get(pid)
        if endpoint is not None and now >= self._redial_at.get(pid, now):
            self._dial(endpoint, pid, now)
            return
        self._no_direct_path(pid, now)

    def _resend_direct(self, pid: str, link: Link, now: float) -> None:
        channel = self._out.get(pid)
        if channel is None:
            return
        for out in channel.pending.values():
            link.send_data(channel.data_body(out))
            out.sent_direct_at = now
            out.relay_resend_at = None

    def _no_direct_path(self, pid: str, now: float) -> None:
        """No connection and no dial for ``pid``: relay what is pending, or fail it."""
        channel = self._out.get(pid)
        if channel is None or not channel.pending:
            return
        identity = self._known.get(pid)
        if self.relay_enabled and identity is not None:
            for out in channel.pending.values():
                if out.relay_resend_at is None:
                    self._relay(identity, KIND_DATA, channel.data_body(out))
                    out.relay_resend_at = now + self.config.relay_resend_interval
            return
        if self._reconnectable(pid):
            return  # a peer we were connected to: redial until the messages' deadline
        for out in channel.drop_all():
            self._settle(out, None, PeerUnreachableError(f"peer {pid[:12]} is unreachable"))

    def _reconnectable(self, pid: str) -> bool:
        return pid in self._was_connected and pid in self._endpoints and not self._closed

    def _reconnect_due(self, pid: str, channel: OutboundChannel) -> float | None:
        """When to redial a lost peer that still has messages waiting (None: not needed)."""
        if not channel.pending or pid in self._active or not self._reconnectable(pid):
            return None
        if self._dialing(pid):
            return None
        return self._redial_at.get(pid, 0.0)

    def _relay(self, identity: PeerIdentity, kind: int, body: bytes) -> None:
        data = seal_envelope(
            kind,
            body,
            credential=self.auth.credential(),
            recipient=identity,
            sender_key=self.identity.signing_key,
        )
        self._events.append(RelayRequest(identity.character_id, identity.peer_id, data))

    def _service_reliable(self, now: float) -> None:
        for pid, channel in self._out.items():
            for out in channel.expire(now):
                self._settle(
                    out,
                    None,
                    PeerUnreachableError(f"no acknowledgement from peer {pid[:12]} in time"),
                )
            due = self._reconnect_due(pid, channel)
            if due is not None and now >= due:
                self._dial(self._endpoints[pid], pid, now)
            identity = self._known.get(pid)
            if identity is None or not self.relay_enabled:
                continue
            for out in channel.pending.values():
                due = self._relay_due(out)
                if due is not None and now >= due:
                    # unacknowledged on the direct path for too long (a silent path is
                    # only noticed at the idle timeout), or a relay copy to repeat
                    self._relay(identity, KIND_DATA, channel.data_body(out))
                    out.relay_resend_at = now + self.config.relay_resend_interval

    def _relay_due(self, out: Outgoing) -> float | None:
        if out.relay_resend_at is not None:
            return out.relay_resend_at
        if out.sent_direct_at is not None:
            return out.sent_direct_at + self.config.direct_ack_timeout
        return None

    def _on_ack(self, pid: str, ref_id: str, path: Path) -> None:
        channel = self._out.get(pid)
        if channel is None:
            return
        for out in channel.ack(ref_id):
            self._settle(out, path, None)

    def _on_data(
        self, identity: PeerIdentity, body: bytes, path: Path, link: Link | None, now: float
    ) -> None:
        epoch, base, seq, payload = decode_data(body)
        message = deserialize(payload)
        # bounded state: a few sender epochs (node restarts) per peer, each holding
        # at most InboundChannel.max_buffered out-of-order messages
        epochs = self._in.setdefault(identity.peer_id, OrderedDict())
        channel = epochs.get(epoch)
        if channel is None:
            channel = epochs[epoch] = InboundChannel()
            while len(epochs) > _MAX_EPOCHS_PER_PEER:
                epochs.popitem(last=False)
        epochs.move_to_end(epoch)
        deliverable, ack_id = channel.accept(base, seq, message.message_id, message)
        for _mid, item in deliverable:
            self._deliver(identity, item, path)
        if ack_id is not None:
            ack = PeerAckMessage(ref_id=ack_id)
            if link is not None and not link.closing and not link.terminated:
                link.send_control(ack)
            elif identity.peer_id in self._active:
                self._active[identity.peer_id].send_control(ack)
            elif self.relay_enabled:
                self._relay(identity, KIND_CONTROL, serialize_bytes(ack))
