"""Reliable peer messages: paths, resends, acks, in-order exactly-once delivery (sans-I/O).

:class:`ReliableDelivery` is the part of :class:`mesh.core.MeshCore` that owns
every reliable message in flight, both ways:

* out: one :class:`~mesh.streams.OutboundChannel` per peer (sequence numbers,
  the unacknowledged queue, deadlines); a message goes on the peer's direct
  link when there is one, else a dial is started (and the message waits for
  it), else it goes through the relay (sealed end to end, :mod:`mesh.relay`)
  or fails. Unacknowledged on the direct path for ``direct_ack_timeout``, a
  message is also relayed; relayed copies repeat every
  ``relay_resend_interval`` until acknowledged or ``send_timeout``. From
  then on the direct link is suspect: later messages go on it and through
  the relay at once, until an acknowledgement comes back on the link (or a
  new link is made), so a link gone silent costs the timeout once, not per
  message;
* in: per sender and sender epoch an :class:`~mesh.streams.InboundChannel`
  delivers each message once, in order, whatever path it took, and answers
  with a cumulative ``PEER_ACK`` by the path the message came by (the link it
  arrived on, or the relay), never by a link that may have gone silent;
* what the application may see: only :data:`~mesh.config.PEER_MESSAGE_TYPES`,
  with the sender fields set to the authenticated peer (:func:`attribute`).

A *path* is the link that carries the peer now (:meth:`mesh.router.LinkTable.direct`:
a direct or a TURN link, :attr:`mesh.link.Link.path` says which) or the relay;
anything with :class:`Carrier`'s two methods carries frames. When the core moves
a peer to its other link (the one in use went silent, or the direct path came
back) it calls :meth:`ReliableDelivery.resend_direct` with the new carrier: what
waits for an acknowledgement goes on it at once, and the receiver's sequence
numbers drop whichever copy comes second.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import OrderedDict
from typing import Any, Protocol

from mesh.admission import Admission, PeerDirectory
from mesh.auth import PeerIdentity
from mesh.config import PEER_MESSAGE_TYPES
from mesh.context import CoreContext
from mesh.events import MessageDelivered, Path, RelayRequest, SendSettled
from mesh.quality import RelayTraffic
from mesh.relay import open_envelope, parse_envelope, seal_envelope
from mesh.router import LinkTable
from mesh.streams import (
    EPOCH_SIZE,
    KIND_CONTROL,
    KIND_DATA,
    MAX_PAYLOAD_SIZE,
    InboundChannel,
    OutboundChannel,
    Outgoing,
    decode_data,
)
from protocol.codec import deserialize, serialize_bytes
from protocol.errors import (
    InvalidMessageError,
    MeshError,
    MessageTooLargeError,
    PeerUnreachableError,
    ProtocolError,
)
from protocol.messages.base import BaseMessage
from protocol.messages.peer import PeerAckMessage

__all__ = ["Carrier", "ReliableDelivery", "attribute"]

logger = logging.getLogger("mesh.core")

_MAX_EPOCHS_PER_PEER = 4
_SENDER_FIELDS = (("sender_id", "character_id"), ("sender_name", "character_name"))


def attribute(message: BaseMessage, identity: PeerIdentity) -> BaseMessage:
    """``message`` with its sender fields set to the authenticated ``identity``.

    ``sender_id``/``sender_name`` (chat-like messages) and ``character_id`` (MOVE)
    are overwritten, never believed.
    """
    fields = type(message).model_fields
    update: dict[str, Any] = {}
    for name, source in _SENDER_FIELDS:
        if name in fields:
            update[name] = getattr(identity, source)
    if "character_id" in fields and "sender_id" not in fields:
        update["character_id"] = identity.character_id
    return message.model_copy(update=update) if update else message


class Carrier(Protocol):
    """A working path to one peer that carries reliable frames (a :class:`mesh.link.Link`)."""

    def send_data(self, body: bytes) -> None:
        """Send a DATA frame body."""

    def send_control(self, message: BaseMessage) -> None:
        """Send a protocol message in a CONTROL frame."""


class ReliableDelivery:
    """Reliable messages to and from every peer (see the module docstring)."""

    def __init__(self, ctx: CoreContext, table: LinkTable, admission: Admission) -> None:
        self._ctx = ctx
        self._table = table
        self._admission = admission
        self._directory: PeerDirectory = admission.directory
        self._epoch = os.urandom(EPOCH_SIZE)
        self._handles = itertools.count(1)
        self._out: dict[str, OutboundChannel] = {}
        self._in: dict[str, OrderedDict[bytes, InboundChannel[BaseMessage]]] = {}
        self._relay_traffic: dict[str, RelayTraffic] = {}
        # peers whose direct link left a message unacknowledged for direct_ack_timeout:
        # until the link proves itself again (an ack on it, or a new link), each message
        # goes on the relay at once as well, instead of waiting out the timeout again
        self._suspect: set[str] = set()

    # sending ------------------------------------------------------------------------

    def send(self, target: str | int, message: BaseMessage, now: float) -> int:
        """Queue ``message`` to a peer (peer id or character id); returns its handle.

        Raises :class:`PeerUnreachableError` when the peer is unknown or too many
        messages to it are unacknowledged, :class:`InvalidMessageError` for a type
        outside :data:`PEER_MESSAGE_TYPES` and :class:`MessageTooLargeError` over
        :data:`~mesh.streams.MAX_PAYLOAD_SIZE`.
        """
        if message.type not in PEER_MESSAGE_TYPES:
            raise InvalidMessageError(f"{message.type} does not travel peer to peer")
        identity = self._directory.lookup(target)
        if identity is None:
            raise PeerUnreachableError(f"unknown peer {target!r}: connect to it first")
        payload = serialize_bytes(message)
        if len(payload) > MAX_PAYLOAD_SIZE:
            raise MessageTooLargeError(
                f"message of {len(payload)} bytes (peer messages carry at most {MAX_PAYLOAD_SIZE})"
            )
        pid = identity.peer_id
        channel = self._out.get(pid)
        if channel is None:
            channel = self._out[pid] = OutboundChannel(self._epoch)
        handle = next(self._handles)
        try:
            out = channel.push(
                handle, message.message_id, payload, now + self._ctx.config.send_timeout
            )
        except OverflowError as exc:
            raise PeerUnreachableError(str(exc)) from exc
        self._route(pid, [out], now)
        return handle

    def pending(self, peer_id: str) -> int:
        """How many messages to ``peer_id`` wait for an acknowledgement."""
        channel = self._out.get(peer_id)
        return len(channel.pending) if channel is not None else 0

    def path_in_use(self, pid: str, now: float) -> Path | None:
        """The path messages to ``pid`` travel now (None: no path connects it).

        ``"relay"`` while one of them is being relayed, or the link in use left
        one unacknowledged for ``direct_ack_timeout`` and has not carried an
        acknowledgement since, or, without a link, while the peer was heard
        through the relay within ``idle_timeout``; else the path of the link in
        use (``"direct"`` or ``"turn"``).
        """
        ctx = self._ctx
        link = self._table.direct(pid)
        direct = link is not None
        linked: Path | None = link.path if link is not None else None
        if not ctx.relay_enabled:
            return linked
        if direct and pid in self._suspect:
            return "relay"
        channel = self._out.get(pid)
        if channel is not None and any(
            out.relay_resend_at is not None for out in channel.pending.values()
        ):
            return "relay"
        if linked is not None:
            return linked
        traffic = self._relay_traffic.get(pid)
        heard = traffic.last_received if traffic is not None else None
        if heard is not None and now - heard <= ctx.config.idle_timeout:
            return "relay"
        return None

    def relay_traffic(self, pid: str) -> RelayTraffic | None:
        """Relay envelopes exchanged with ``pid`` (None: none yet)."""
        return self._relay_traffic.get(pid)

    def relay_peers(self) -> list[str]:
        """Peers we exchanged relay envelopes with (connected over the relay or not)."""
        return list(self._relay_traffic)

    def fail_all(self, error: MeshError) -> None:
        """Settle every pending message with ``error`` (the node closes)."""
        for channel in self._out.values():
            for out in channel.drop_all():
                self._settle(out, None, error)

    # path changes -------------------------------------------------------------------

    def resend_direct(self, pid: str, carrier: Carrier, now: float) -> None:
        """A link to ``pid`` came up, or now carries it: everything pending goes on it."""
        self._suspect.discard(pid)  # a link that just proved itself both ways
        channel = self._out.get(pid)
        if channel is None:
            return
        for out in channel.pending.values():
            carrier.send_data(channel.data_body(out))
            out.sent_direct_at = now
            out.relay_resend_at = None

    def direct_lost(self, pid: str, now: float, *, redial: bool) -> None:
        """``pid``'s direct link ended: redial at once (``redial``: the path broke while
        messages wait), else relay what is pending or fail it."""
        channel = self._out.get(pid)
        endpoint = self._directory.endpoints.get(pid)
        if (
            redial
            and channel is not None
            and channel.pending
            and endpoint is not None
            and now >= self._directory.redial_at.get(pid, now)
            and not self._table.dialing(pid)
            and not self._ctx.closed
        ):
            self._table.dial(endpoint, pid, now)  # the path broke, not the peer's will
        else:
            self._no_direct_path(pid, now)

    def dial_failed(self, pid: str, now: float) -> None:
        """A dial to ``pid`` failed: back off, and relay or fail what is pending."""
        if self._table.direct(pid) is not None or self._table.dialing(pid):
            return
        directory = self._directory
        lost = pid in directory.was_connected  # a broken path, not a stranger: retry sooner
        config = self._ctx.config
        directory.redial_at[pid] = now + (
            config.reconnect_interval if lost else config.redial_backoff
        )
        self._no_direct_path(pid, now)

    # timers -------------------------------------------------------------------------

    def timers(self, times: list[float]) -> None:
        """Append to ``times`` when :meth:`service` must run next."""
        relay = self._ctx.relay_enabled
        for pid, channel in self._out.items():
            reconnect = self._reconnect_due(pid, channel)
            if reconnect is not None:
                times.append(reconnect)
            if not channel.pending:
                continue
            # deadlines grow with seq (push time + send_timeout): the first is the soonest
            times.append(next(iter(channel.pending.values())).deadline)
            if relay:
                for out in channel.pending.values():
                    due = self._relay_due(out)
                    if due is not None:
                        times.append(due)

    def service(self, now: float) -> None:
        """Expire, redial and relay what is due at ``now``."""
        ctx = self._ctx
        for pid, channel in self._out.items():
            for out in channel.expire(now):
                self._settle(
                    out,
                    None,
                    PeerUnreachableError(f"no acknowledgement from peer {pid[:12]} in time"),
                )
            due = self._reconnect_due(pid, channel)
            if due is not None and now >= due:
                self._table.dial(self._directory.endpoints[pid], pid, now)
            identity = self._directory.known.get(pid)
            if identity is None or not ctx.relay_enabled:
                continue
            for out in channel.pending.values():
                due = self._relay_due(out)
                if due is not None and now >= due:
                    # unacknowledged on the direct path for too long (a silent path is
                    # only noticed at the idle timeout), or a relay copy to repeat
                    if out.relay_resend_at is None and self._table.direct(pid) is not None:
                        self._suspect.add(pid)
                    self._relay(identity, KIND_DATA, channel.data_body(out))
                    out.relay_resend_at = now + ctx.config.relay_resend_interval

    # receiving ----------------------------------------------------------------------

    def on_ack(self, pid: str, ref_id: str, path: Path) -> None:
        """A PEER_ACK from ``pid`` for ``ref_id`` and every earlier message."""
        if path != "relay":
            self._suspect.discard(pid)  # the link works both ways again
        channel = self._out.get(pid)
        if channel is None:
            return
        for out in channel.ack(ref_id):
            self._settle(out, path, None)

    def on_data(
        self,
        identity: PeerIdentity,
        body: bytes,
        path: Path,
        arrived_on: Carrier | None,
        now: float,
    ) -> None:
        """A DATA frame from the authenticated ``identity``; raises ``ProtocolError`` if bad.

        ``arrived_on``: the open link it came on (None: the relay); ``path``: its path.
        The cumulative ack goes back the same way: on that link, or through the relay.
        """
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
        if ack_id is None:
            return
        ack = PeerAckMessage(ref_id=ack_id)
        # the acknowledgement returns by the path the message came by, which just
        # proved to work. Never "the direct link" for a relayed message: the sender
        # relays only when its direct path is silent, and a link silent one way
        # still looks up from this side until its idle timeout.
        if arrived_on is not None:
            arrived_on.send_control(ack)
        elif self._ctx.relay_enabled:
            self._relay(identity, KIND_CONTROL, serialize_bytes(ack))
        else:  # handed an envelope (PeerNode.receive_relayed) without a relay transport
            carrier = self._carrier(identity.peer_id)
            if carrier is not None:
                carrier.send_control(ack)

    def receive_relayed(self, data: bytes, now: float) -> None:
        """Take one relay envelope (from the relay transport); bad ones are dropped."""
        ctx = self._ctx
        if ctx.closed:
            return
        try:
            credential, sealed = parse_envelope(data)
            sender = ctx.auth.verify_credential(credential, now=ctx.wall(now))
            kind, body = open_envelope(sealed, sender=sender, recipient_key=ctx.identity.box_key)
            if sender.peer_id == ctx.identity.peer_id:
                raise ProtocolError("relayed frame from ourselves")
            self._admission.learn(sender)
            traffic = self._traffic(sender.peer_id)
            traffic.bytes_received += len(data)
            traffic.last_received = now
            if kind == KIND_DATA:
                self.on_data(sender, body, "relay", None, now)
            elif kind == KIND_CONTROL:
                ack = deserialize(body)
                if not isinstance(ack, PeerAckMessage):
                    raise ProtocolError("only PEER_ACK travels as a relayed control frame")
                self.on_ack(sender.peer_id, ack.ref_id, "relay")
            else:
                raise ProtocolError("unknown relayed frame kind")
        except (ProtocolError, ValueError) as exc:
            ctx.stats["bad_relay"] += 1
            logger.debug("relay envelope dropped: %s", exc)

    # internals ----------------------------------------------------------------------

    def _carrier(self, pid: str) -> Carrier | None:
        """The working path that carries frames to ``pid`` now (its direct link), if any."""
        return self._table.direct(pid)

    def _deliver(self, identity: PeerIdentity, message: BaseMessage, path: Path) -> None:
        if message.type not in PEER_MESSAGE_TYPES:
            self._ctx.stats["rejected_messages"] += 1
            logger.debug(
                "dropping %s from peer %s: not a peer message type",
                message.type,
                identity.peer_id[:12],
            )
            return
        self._ctx.events.append(MessageDelivered(identity, attribute(message, identity), path))

    def _settle(self, out: Outgoing, path: Path | None, error: MeshError | None) -> None:
        self._ctx.events.append(SendSettled(out.handle, path, error))

    def _route(self, pid: str, outs: list[Outgoing], now: float) -> None:
        """Send ``outs`` to ``pid`` on the best path available now."""
        channel = self._out[pid]
        carrier = self._carrier(pid)
        if carrier is not None:
            identity = self._directory.known.get(pid) if pid in self._suspect else None
            for out in outs:
                body = channel.data_body(out)
                carrier.send_data(body)
                out.sent_direct_at = now
                if identity is not None and self._ctx.relay_enabled:
                    # the link went silent lately: relay at once too (the receiver
                    # keeps whichever copy comes first, the ack says which path won)
                    self._relay(identity, KIND_DATA, body)
                    out.relay_resend_at = now + self._ctx.config.relay_resend_interval
            return
        if self._table.dialing(pid):
            return
        endpoint = self._directory.endpoints.get(pid)
        if endpoint is not None and now >= self._directory.redial_at.get(pid, now):
            self._table.dial(endpoint, pid, now)
            return
        self._no_direct_path(pid, now)

    def _no_direct_path(self, pid: str, now: float) -> None:
        """No connection and no dial for ``pid``: relay what is pending, or fail it."""
        channel = self._out.get(pid)
        if channel is None or not channel.pending:
            return
        identity = self._directory.known.get(pid)
        if self._ctx.relay_enabled and identity is not None:
            for out in channel.pending.values():
                if out.relay_resend_at is None:
                    self._relay(identity, KIND_DATA, channel.data_body(out))
                    out.relay_resend_at = now + self._ctx.config.relay_resend_interval
            return
        if self._reconnectable(pid):
            return  # a peer we were connected to: redial until the messages' deadline
        for out in channel.drop_all():
            self._settle(out, None, PeerUnreachableError(f"peer {pid[:12]} is unreachable"))

    def _reconnectable(self, pid: str) -> bool:
        directory = self._directory
        return (
            pid in directory.was_connected and pid in directory.endpoints and not self._ctx.closed
        )

    def _reconnect_due(self, pid: str, channel: OutboundChannel) -> float | None:
        """When to redial a lost peer that still has messages waiting (None: not needed)."""
        if not channel.pending or self._table.direct(pid) is not None:
            return None
        if not self._reconnectable(pid) or self._table.dialing(pid):
            return None
        return self._directory.redial_at.get(pid, 0.0)

    def _relay(self, identity: PeerIdentity, kind: int, body: bytes) -> None:
        ctx = self._ctx
        data = seal_envelope(
            kind,
            body,
            credential=ctx.auth.credential(),
            recipient=identity,
            sender_key=ctx.identity.signing_key,
        )
        self._traffic(identity.peer_id).bytes_sent += len(data)
        ctx.events.append(RelayRequest(identity.character_id, identity.peer_id, data))

    def _traffic(self, pid: str) -> RelayTraffic:
        traffic = self._relay_traffic.get(pid)
        if traffic is None:
            traffic = self._relay_traffic[pid] = RelayTraffic()
        return traffic

    def _relay_due(self, out: Outgoing) -> float | None:
        if out.relay_resend_at is not None:
            return out.relay_resend_at
        if out.sent_direct_at is not None:
            return out.sent_direct_at + self._ctx.config.direct_ack_timeout
        return None
