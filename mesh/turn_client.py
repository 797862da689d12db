"""A sans-I/O TURN client (RFC 8656): one relayed UDP address on a TURN server.

When no direct path opens, a node allocates a relay on the operator's TURN
server and reaches its peers through it. This module owns no socket and reads
no clock; it shares the node's one UDP socket through the same calls as
:class:`mesh.stun_client.StunClient`: :meth:`TurnClient.datagrams_to_send`
(everything goes to the TURN server), :meth:`TurnClient.receive_datagram` (the
socket's demultiplexer hands over what came from the server's address),
:meth:`TurnClient.get_timer` / :meth:`TurnClient.handle_timer`, and
:meth:`TurnClient.next_event`.

Life of an allocation (:class:`TurnState`)::

    IDLE -allocate()-> CHALLENGING -401-> ALLOCATING -success-> ALLOCATED -release()-> RELEASING
                                                                              -> CLOSED
    any state -error, timeout, lost refresh-> FAILED;  close(): CLOSED at once

- authentication is the long-term credential mechanism with the credentials the
  lobby issues (the TURN REST scheme: ``"<expiry>:<id>"`` and its HMAC
  password): the first Allocate carries none, the 401 names REALM and NONCE,
  every later request is signed; a 438 (Stale Nonce) answer takes the new nonce
  and resends (at most :data:`MAX_STALE_RETRIES` times a request). A success
  answer to a signed request counts only with a valid MESSAGE-INTEGRITY.
- the allocation is refreshed before its lifetime ends; permissions (per peer
  IP, RFC lifetime 300 s) and channel bindings (which also refresh their
  permission) every :data:`PERMISSION_REFRESH` seconds, as long as they are
  wanted. A refresh that fails loses the allocation (:class:`AllocationFailed`).
- :meth:`TurnClient.send` uses the 4-byte ChannelData framing once a channel to
  the peer is bound, a Send indication before; what peers send arrives as
  :class:`DataReceived`, whichever framing the server used.

Requests retransmit per RFC 8489 (:mod:`mesh.stun_transactions`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from mesh.stun_transactions import Retransmission, Transaction, Transactions, same_address
from protocol.errors import MeshError, StunError
from protocol.stun import (
    Address,
    DatagramKind,
    Method,
    StunClass,
    StunMessage,
    classify_datagram,
    new_transaction_id,
    parse_message,
)
from protocol.turn import (
    CHANNEL_MAX,
    CHANNEL_MIN,
    LongTermCredentials,
    allocate_request,
    allocation_from,
    channel_bind_request,
    create_permission_request,
    encode_channel_data,
    read_channel_data,
    refresh_request,
    send_indication,
)

__all__ = [
    "MAX_STALE_RETRIES",
    "PERMISSION_REFRESH",
    "AllocationFailed",
    "Allocated",
    "ChannelBindFailed",
    "ChannelBound",
    "DataReceived",
    "PermissionFailed",
    "PermissionInstalled",
    "Released",
    "TurnClient",
    "TurnEvent",
    "TurnState",
]

PERMISSION_REFRESH = 240.0  # RFC 8656: permissions last 300 s
MAX_STALE_RETRIES = 2


class TurnState(Enum):
    IDLE = "idle"
    CHALLENGING = "challenging"  # unauthenticated Allocate sent, waiting for the 401
    ALLOCATING = "allocating"  # signed Allocate sent
    ALLOCATED = "allocated"
    RELEASING = "releasing"  # Refresh with LIFETIME 0 sent
    CLOSED = "closed"
    FAILED = "failed"


_ALLOWED: dict[TurnState, frozenset[TurnState]] = {
    TurnState.IDLE: frozenset({TurnState.CHALLENGING, TurnState.CLOSED}),
    TurnState.CHALLENGING: frozenset({TurnState.ALLOCATING, TurnState.ALLOCATED}),
    TurnState.ALLOCATING: frozenset({TurnState.ALLOCATED}),
    TurnState.ALLOCATED: frozenset({TurnState.RELEASING}),
    TurnState.RELEASING: frozenset(),
    TurnState.CLOSED: frozenset(),
    TurnState.FAILED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Allocated:
    relayed: Address  # where peers send to reach us
    mapped: Address | None  # our server-reflexive address, as the TURN server saw it
    lifetime: int


@dataclass(frozen=True, slots=True)
class AllocationFailed:
    reason: str
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class Released:
    pass


@dataclass(frozen=True, slots=True)
class PermissionInstalled:
    host: str


@dataclass(frozen=True, slots=True)
class PermissionFailed:
    host: str
    reason: str
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class ChannelBound:
    peer: Address
    channel: int


@dataclass(frozen=True, slots=True)
class ChannelBindFailed:
    peer: Address
    channel: int
    reason: str
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class DataReceived:
    peer: Address
    data: bytes


TurnEvent = (
    Allocated
    | AllocationFailed
    | Released
    | PermissionInstalled
    | PermissionFailed
    | ChannelBound
    | ChannelBindFailed
    | DataReceived
)


class _Op(Enum):
    PROBE = "allocate (unauthenticated)"
    ALLOCATE = "allocate"
    REFRESH = "refresh"
    PERMISSION = "create permission"
    CHANNEL = "channel bind"
    RELEASE = "release"


_METHODS = {
    _Op.PROBE: Method.ALLOCATE,
    _Op.ALLOCATE: Method.ALLOCATE,
    _Op.REFRESH: Method.REFRESH,
    _Op.RELEASE: Method.REFRESH,
    _Op.PERMISSION: Method.CREATE_PERMISSION,
    _Op.CHANNEL: Method.CHANNEL_BIND,
}


@dataclass(slots=True)
class _Request:
    """What a transaction was for, to finish or resend it."""

    op: _Op
    peer: Address | None = None
    channel: int = 0
    stale_retries: int = 0


@dataclass(slots=True)
class _Permission:
    installed: bool = False
    refresh_at: float = math.inf  # inf while a CreatePermission is in flight


@dataclass(slots=True)
class _Channel:
    number: int
    bound: bool = False
    refresh_at: float = math.inf  # inf while a ChannelBind is in flight


class TurnClient:
    """One allocation on ``server`` (see the module docstring)."""

    def __init__(
        self,
        server: Address,
        username: str,
        password: str,
        *,
        lifetime: int = 600,
        retransmission: Retransmission | None = None,
        max_pending: int = 64,
        new_id: Callable[[], bytes] = new_transaction_id,
    ) -> None:
        self.server = server
        self._username = username
        self._password = password
        self._lifetime = lifetime
        self._new_id = new_id
        self._transactions: Transactions[_Request] = Transactions(
            retransmission or Retransmission(), max_pending
        )
        self._credentials: LongTermCredentials | None = None
        self._state = TurnState.IDLE
        self.relayed: Address | None = None
        self.mapped: Address | None = None
        self._refresh_at = math.inf
        self._permissions: dict[str, _Permission] = {}
        self._channels: dict[Address, _Channel] = {}
        self._channel_peers: dict[int, Address] = {}
        self._next_channel = CHANNEL_MIN
        self._outbox: list[bytes] = []
        self._events: deque[TurnEvent] = deque()
        # get_timer's answer, recomputed only after something that moves a deadline (a
        # request, an answer, a timer pass, a state change): the node asks on every flush,
        # i.e. per relayed datagram, and relaying moves none of them
        self._timer: float | None = None
        self._timer_stale = True

    # -- state --------------------------------------------------------------------------

    @property
    def state(self) -> TurnState:
        return self._state

    def _move(self, state: TurnState) -> None:
        self._timer_stale = True
        if state in (TurnState.FAILED, TurnState.CLOSED):
            self._state = state
            self._refresh_at = math.inf
            self._permissions.clear()
            self._channels.clear()
            self._channel_peers.clear()
            for tx in self._transactions:
                self._transactions.finish(tx.transaction_id)
            return
        if state not in _ALLOWED[self._state]:
            raise MeshError(f"TURN client: {self._state.value} -> {state.value} is not allowed")
        self._state = state

    def _require_allocated(self) -> None:
        if self._state is not TurnState.ALLOCATED:
            raise MeshError(f"TURN client is {self._state.value}, not allocated")

    # -- commands -----------------------------------------------------------------------

    def allocate(self, now: float) -> None:
        """Start allocating (an :class:`Allocated` or :class:`AllocationFailed` follows)."""
        self._move(TurnState.CHALLENGING)
        self._request(_Request(_Op.PROBE), now)

    def permit(self, peer: Address, now: float) -> None:
        """Let ``peer``'s IP address send to the relay (kept until :meth:`close`; a
        CreatePermission that cannot start raises :class:`MeshError` and keeps nothing)."""
        self._require_allocated()
        host = peer[0]
        if host not in self._permissions:
            self._request(_Request(_Op.PERMISSION, peer), now)  # first: see bind_channel
            self._permissions[host] = _Permission()

    def bind_channel(self, peer: Address, now: float) -> int:
        """Bind a channel to ``peer`` (also its permission); return the channel number.

        Raises :class:`MeshError` when the client is not allocated, no channel number is
        left or the ChannelBind cannot start (too many requests in flight); then nothing
        is kept of it, and a later call binds afresh.
        """
        self._require_allocated()
        channel = self._channels.get(peer)
        if channel is None:
            number = self._next_channel
            if number > CHANNEL_MAX:
                raise MeshError("TURN client: every channel number is in use")
            # the request first: a channel registered for a ChannelBind that never left
            # would stay unbound for good (no answer, no refresh), its peer on Send
            # indications
            self._request(_Request(_Op.CHANNEL, peer, number), now)
            self._next_channel += 1
            channel = self._channels[peer] = _Channel(number)
            self._channel_peers[number] = peer
        return channel.number

    def send(self, peer: Address, data: bytes) -> None:
        """Relay ``data`` to ``peer`` (ChannelData once bound, else a Send indication)."""
        channel = self._channels.get(peer)
        if channel is not None and channel.bound and self._state is TurnState.ALLOCATED:
            self._outbox.append(encode_channel_data(channel.number, data))
            return
        self._require_allocated()
        if channel is not None or peer[0] in self._permissions:
            self._outbox.append(send_indication(self._new_id(), peer, data))
        else:
            raise MeshError(f"TURN client: no permission for {peer[0]} (permit() it first)")

    def update_credentials(self, username: str, password: str) -> None:
        """Sign every later request with these credentials (fresh time-limited ones,
        before the old ones expire: a refresh signed with expired ones is refused)."""
        self._username, self._password = username, password
        creds = self._credentials
        if creds is not None:
            self._credentials = LongTermCredentials.from_password(
                username, password, creds.realm, creds.nonce
            )

    def release(self, now: float) -> None:
        """Delete the allocation on the server (a :class:`Released` follows)."""
        self._require_allocated()
        self._move(TurnState.RELEASING)
        self._request(_Request(_Op.RELEASE), now)

    def close(self) -> None:
        """Forget everything at once, sending nothing (the server lets it time out)."""
        self._move(TurnState.CLOSED)
        self._outbox.clear()

    # -- I/O calls ----------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """What to send now, all of it to the TURN server."""
        if not self._outbox:
            return []
        out, self._outbox = self._outbox, []
        server = self.server
        return [(data, server) for data in out]

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` wants to run next (None: nothing scheduled)."""
        if not self._timer_stale:
            return self._timer
        self._timer_stale = False
        due = min(
            self._refresh_at,
            min((p.refresh_at for p in self._permissions.values()), default=math.inf),
            min((c.refresh_at for c in self._channels.values()), default=math.inf),
            self._transactions.next_at() or math.inf,
        )
        self._timer = None if due == math.inf else due
        return self._timer

    def handle_timer(self, now: float) -> None:
        """Retransmit, fail what timed out, refresh what is due."""
        self._timer_stale = True
        resend, failed = self._transactions.due(now)
        self._outbox.extend(tx.request for tx in resend)
        for tx in failed:
            self._failed(tx.context, f"no answer after {tx.transmissions} sends", None)
        if self._state is not TurnState.ALLOCATED:
            return
        # a refresh that cannot start (every transaction slot taken) is tried again one
        # RTO later: raising here would stop the node's timer
        retry = now + self._transactions.policy.rto
        if self._refresh_at <= now:
            started = self._start(_Request(_Op.REFRESH), now)
            self._refresh_at = math.inf if started else retry
        for host, permission in self._permissions.items():
            if permission.refresh_at <= now:
                started = self._start(_Request(_Op.PERMISSION, (host, 0)), now)
                permission.refresh_at = math.inf if started else retry
        for peer, channel in self._channels.items():
            if channel.refresh_at <= now:
                started = self._start(_Request(_Op.CHANNEL, peer, channel.number), now)
                channel.refresh_at = math.inf if started else retry

    def receive_datagram(self, data: bytes, source: Address, now: float) -> bool:
        """Take a datagram; True if it came from the TURN server (then it is consumed).

        Malformed datagrams from the server are dropped (still True); anything
        from another address is not ours (False).
        """
        if not same_address(self.server, source):
            return False
        kind = classify_datagram(data, from_turn_server=True)
        if kind is DatagramKind.CHANNEL_DATA:
            self._channel_data(data)
        elif kind is DatagramKind.STUN:
            self._timer_stale = True  # an answer finishes a transaction, schedules a refresh
            try:
                message = parse_message(data)
            except StunError:
                return True
            if message.cls is StunClass.INDICATION:
                self._indication(message)
            elif message.cls is not StunClass.REQUEST:
                self._response(message, source, now)
        return True

    def next_event(self) -> TurnEvent | None:
        return self._events.popleft() if self._events else None

    def read_channel_data(self, data: bytes) -> tuple[Address, bytes] | None:
        """``(peer, data)`` of a ChannelData frame the server sent (the caller checked the
        source), with no :class:`DataReceived` event: the per-datagram path of a relayed
        link. None, and the frame dropped, when it is malformed, its channel is not ours
        or the allocation is not up (what :meth:`receive_datagram` does with it too)."""
        try:
            channel, payload = read_channel_data(data)
        except StunError:
            return None
        peer = self._channel_peers.get(channel)
        if peer is None or self._state is not TurnState.ALLOCATED:
            return None
        return peer, payload

    # -- internals ----------------------------------------------------------------------

    def _start(self, request: _Request, now: float) -> bool:
        """:meth:`_request`, False instead of :class:`MeshError` when no slot is free."""
        if len(self._transactions) >= self._transactions.max_pending:
            return False
        self._request(request, now)
        return True

    def _request(self, request: _Request, now: float) -> None:
        self._timer_stale = True
        transaction_id = self._new_id()
        data = self._encode(request, transaction_id)
        self._transactions.start(transaction_id, self.server, data, request, now)
        self._outbox.append(data)

    def _encode(self, request: _Request, transaction_id: bytes) -> bytes:
        op, creds = request.op, self._credentials
        if op is _Op.PROBE:
            return allocate_request(transaction_id)
        assert creds is not None  # noqa: S101 - every later request follows the 401
        if op is _Op.ALLOCATE:
            return allocate_request(transaction_id, creds, lifetime=self._lifetime)
        if op is _Op.REFRESH:
            return refresh_request(transaction_id, creds, lifetime=self._lifetime)
        if op is _Op.RELEASE:
            return refresh_request(transaction_id, creds, lifetime=0)
        assert request.peer is not None  # noqa: S101 - permission and channel name a peer
        if op is _Op.PERMISSION:
            return create_permission_request(transaction_id, creds, [request.peer])
        return channel_bind_request(transaction_id, creds, request.channel, request.peer)

    def _response(self, message: StunMessage, source: Address, now: float) -> None:
        tx = self._transactions.get(message.transaction_id, source)
        if tx is None or message.method != _METHODS[tx.context.op]:
            return
        request = tx.context
        if message.cls is StunClass.SUCCESS and request.op is not _Op.PROBE:
            key = self._credentials.key if self._credentials is not None else b""
            try:
                message.check_integrity(key)
            except StunError:
                return  # unsigned or forged: not the server's answer; keep waiting
        self._transactions.finish(tx.transaction_id)
        if message.cls is StunClass.ERROR:
            self._error(tx, message, now)
        else:
            self._success(request, message, now)

    def _error(self, tx: Transaction[_Request], message: StunMessage, now: float) -> None:
        request = tx.context
        try:
            error = message.error_code()
            realm, nonce = message.realm(), message.nonce()
        except StunError as exc:
            self._failed(request, f"malformed error answer: {exc}", None)
            return
        code, reason = error if error is not None else (None, "error without ERROR-CODE")
        if request.op is _Op.PROBE and code == 401 and realm is not None and nonce is not None:
            self._credentials = LongTermCredentials.from_password(
                self._username, self._password, realm, nonce
            )
            self._move(TurnState.ALLOCATING)
            self._request(_Request(_Op.ALLOCATE), now)
            return
        if (
            code == 438
            and nonce is not None
            and self._credentials is not None
            and request.stale_retries < MAX_STALE_RETRIES
        ):
            self._credentials = self._credentials.with_nonce(nonce)
            request.stale_retries += 1
            self._request(request, now)
            return
        if request.op is _Op.RELEASE and code == 437:  # already gone: released all the same
            self._move(TurnState.CLOSED)
            self._events.append(Released())
            return
        self._failed(request, f"{code} {reason}", code)

    def _success(self, request: _Request, message: StunMessage, now: float) -> None:
        op = request.op
        if op in (_Op.PROBE, _Op.ALLOCATE):
            try:
                allocation = allocation_from(message)
            except StunError as exc:
                self._failed(request, f"malformed Allocate answer: {exc}", None)
                return
            self._move(TurnState.ALLOCATED)
            self.relayed, self.mapped = allocation.relayed, allocation.mapped
            self._schedule_refresh(allocation.lifetime, now)
            self._events.append(
                Allocated(allocation.relayed, allocation.mapped, allocation.lifetime)
            )
        elif op is _Op.REFRESH:
            lifetime = _lifetime(message)
            if lifetime is not None:
                self._schedule_refresh(lifetime, now)
        elif op is _Op.RELEASE:
            self._move(TurnState.CLOSED)
            self._events.append(Released())
        elif op is _Op.PERMISSION:
            assert request.peer is not None  # noqa: S101
            permission = self._permissions.get(request.peer[0])
            if permission is not None:
                permission.refresh_at = now + PERMISSION_REFRESH
                if not permission.installed:
                    permission.installed = True
                    self._events.append(PermissionInstalled(request.peer[0]))
        else:
            assert request.peer is not None  # noqa: S101
            channel = self._channels.get(request.peer)
            if channel is not None:
                first = not channel.bound
                channel.bound = True
                channel.refresh_at = now + PERMISSION_REFRESH
                if first:
                    self._events.append(ChannelBound(request.peer, channel.number))

    def _schedule_refresh(self, lifetime: int, now: float) -> None:
        self._refresh_at = now + lifetime - min(60.0, lifetime / 5)

    def _failed(self, request: _Request, reason: str, code: int | None) -> None:
        op = request.op
        if op is _Op.PERMISSION:
            assert request.peer is not None  # noqa: S101
            self._permissions.pop(request.peer[0], None)
            self._events.append(PermissionFailed(request.peer[0], reason, code))
        elif op is _Op.CHANNEL:
            assert request.peer is not None  # noqa: S101
            channel = self._channels.pop(request.peer, None)
            if channel is not None:
                self._channel_peers.pop(channel.number, None)
            self._events.append(ChannelBindFailed(request.peer, request.channel, reason, code))
        elif op is _Op.RELEASE:
            self._move(TurnState.CLOSED)
            self._events.append(Released())
        elif self._state not in (TurnState.FAILED, TurnState.CLOSED):
            self._move(TurnState.FAILED)
            self._events.append(AllocationFailed(f"{op.value}: {reason}", code))

    def _indication(self, message: StunMessage) -> None:
        if message.method != Method.DATA or self._state is not TurnState.ALLOCATED:
            return
        try:
            peer, data = message.xor_peer_address(), message.data()
        except StunError:
            return
        if peer is not None and data is not None:
            self._events.append(DataReceived(peer, data))

    def _channel_data(self, data: bytes) -> None:
        relayed = self.read_channel_data(data)
        if relayed is not None:
            self._events.append(DataReceived(*relayed))


def _lifetime(message: StunMessage) -> int | None:
    try:
        return message.lifetime()
    except StunError:
        return None
