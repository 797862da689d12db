"""The program the NAT lab runs inside its namespaces, and the asyncio driver of the STUN client.

``python -m tests.netlab_agent COMMAND ...`` (run with ``ip netns exec``) prints
one JSON object per line on stdout and reads the other side's facts, one JSON
line, from stdin where a command needs them. Every command is bounded in time.

- ``stun-server HOST PORT [PORT ...]``: the lobby's STUN responder
  (:class:`lobby.stun.StunServer`) on each port; prints ``{"ports": [...]}``
  and serves until stdin closes.
- ``probe BIND SERVER PORT [PORT ...]``: one UDP socket asks every port of
  ``SERVER``; prints ``{"local": addr, "mapped": [addr, ...]}``.
- ``punch BIND SERVER:PORT SECONDS``: learns its mapping (printed as
  ``{"mapped": addr, "local": addr}``), reads the peer's address (its mapping, or
  its local address behind the same NAT) from stdin, then both sides
  send to each other every 50 ms for at most SECONDS; prints ``{"direct": bool}``
  (true once a packet came from the peer and the peer confirmed one of ours).
- ``turn BIND SERVER:PORT USERNAME PASSWORD COUNT``: allocates a relay with the
  TURN codec (:mod:`protocol.turn`; the 401 then the authenticated Allocate),
  prints ``{"relayed": addr, "mapped": addr, "allocate_ms": ...}``, reads the
  peer's relayed address from stdin, installs a permission and binds a
  channel, sends COUNT numbered payloads (half as Send indications, half as
  ChannelData) and prints ``{"received": [...]}`` with what the peer's relay
  delivered, then deletes the allocation.
- ``rtt BIND SERVER:PORT COUNT``: COUNT Binding round trips on one socket;
  prints ``{"rtt_ms": [...]}`` (for the benchmark).
- ``allocate BIND SERVER:PORT USERNAME PASSWORD COUNT``: COUNT allocations (each
  from a fresh socket, deleted after); prints ``{"allocate_ms": [...]}``.

:class:`StunSocket` (the sans-I/O :class:`mesh.stun_client.StunClient` on a real
asyncio UDP socket) is also what the loopback tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

from lobby.stun import StunResponder, StunServer
from mesh.stun_client import Retransmission, StunClient, StunEvent
from protocol.errors import StunError
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
    Allocation,
    LongTermCredentials,
    allocate_request,
    allocation_from,
    channel_bind_request,
    create_permission_request,
    encode_channel_data,
    parse_channel_data,
    refresh_request,
    send_indication,
)

__all__ = ["StunSocket", "main"]

PUNCH_INTERVAL = 0.05
TURN_RETRIES = 6
TURN_RTO = 0.3
CHANNEL = 0x4000


class StunSocket(asyncio.DatagramProtocol):
    """One UDP socket shared by a :class:`StunClient` and whatever else arrives.

    Datagrams the STUN client does not consume land in ``inbox`` as
    ``(data, source)``; :meth:`binding` runs one Binding transaction to the end.
    """

    def __init__(self, client: StunClient | None = None) -> None:
        self.client = client or StunClient(Retransmission(0.1, 5, 4))
        self.inbox: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self._waiters: dict[bytes, asyncio.Future[StunEvent]] = {}
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    async def open(cls, host: str, port: int = 0, client: StunClient | None = None) -> StunSocket:
        loop = asyncio.get_running_loop()
        _, sock = await loop.create_datagram_endpoint(lambda: cls(client), local_addr=(host, port))
        return sock

    @property
    def address(self) -> Address:
        assert self.transport is not None
        name = self.transport.get_extra_info("sockname")
        return str(name[0]), int(name[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        source = (str(addr[0]), int(addr[1]))
        now = asyncio.get_running_loop().time()
        if classify_datagram(data, from_turn_server=False) is DatagramKind.STUN and (
            self.client.receive_datagram(data, source, now)
        ):
            self._pump(now)
            return
        self.inbox.put_nowait((data, source))

    def send(self, data: bytes, addr: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()
        for waiter in self._waiters.values():
            waiter.cancel()

    async def binding(self, server: Address) -> StunEvent:
        """Send a Binding request to ``server``; the outcome once it has one."""
        loop = asyncio.get_running_loop()
        transaction_id = self.client.request(server, loop.time())
        waiter: asyncio.Future[StunEvent] = loop.create_future()
        self._waiters[transaction_id] = waiter
        self._pump(loop.time())
        try:
            return await asyncio.wait_for(waiter, 60)
        finally:
            self._waiters.pop(transaction_id, None)

    def _pump(self, now: float) -> None:
        for data, destination in self.client.datagrams_to_send(now):
            self.send(data, destination)
        while (event := self.client.next_event()) is not None:
            waiter = self._waiters.get(event.transaction_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self.client.get_timer()
        if due is not None:
            self._timer = asyncio.get_running_loop().call_at(due, self._on_timer, due)

    def _on_timer(self, due: float) -> None:
        self._timer = None
        now = max(asyncio.get_running_loop().time(), due)
        self.client.handle_timer(now)
        self._pump(now)


def _emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def _read_json_line() -> Any:
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit("stdin closed before the peer's facts arrived")
    return json.loads(line)


def _address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _mapped(sock: StunSocket, server: Address) -> Address:
    event = await sock.binding(server)
    mapped = getattr(event, "mapped", None)
    if mapped is None:
        raise SystemExit(f"STUN failed: {event}")
    return cast(Address, mapped)


async def stun_server(host: str, ports: Sequence[int]) -> None:
    servers = []
    for port in ports:
        server = StunServer(StunResponder(rate=1000, burst=1000, max_sources=1000, clock=time.time))
        await server.start(host, port)
        servers.append(server)
    _emit(ports=[server.port for server in servers])
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for server in servers:
        await server.close()


async def probe(bind: str, server: str, ports: Sequence[int]) -> None:
    sock = await StunSocket.open(bind)
    try:
        mapped = [await _mapped(sock, (server, port)) for port in ports]
        _emit(local=sock.address, mapped=mapped, behaviour=sock.client.mapping_behaviour().value)
    finally:
        sock.close()


async def punch(bind: str, server: Address, seconds: float) -> None:
    sock = await StunSocket.open(bind)
    try:
        _emit(mapped=await _mapped(sock, server), local=sock.address)
        peer = cast(Address, tuple(await _read_json_line()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        heard = confirmed = False
        sent = 0

        def handle(data: bytes, source: Address) -> None:
            nonlocal heard, confirmed
            if source == peer and data.startswith(b"punch"):
                heard = True
                sock.send(b"ack " + data, peer)
            elif source == peer and data.startswith(b"ack"):
                confirmed = True

        while loop.time() < deadline and not (heard and confirmed):
            sock.send(f"punch {sent}".encode(), peer)
            sent += 1
            with contextlib.suppress(TimeoutError):
                handle(*await asyncio.wait_for(sock.inbox.get(), PUNCH_INTERVAL))
                while not sock.inbox.empty():
                    handle(*sock.inbox.get_nowait())
        # keep answering a little, so the peer can confirm too
        linger = loop.time() + 0.5
        while heard and confirmed and loop.time() < linger:
            with contextlib.suppress(TimeoutError):
                handle(*await asyncio.wait_for(sock.inbox.get(), linger - loop.time()))
        _emit(direct=heard and confirmed, sent=sent)
    finally:
        sock.close()


class _TurnSession:
    """The TURN dance over a :class:`StunSocket`, with our codec and simple retransmission."""

    def __init__(self, sock: StunSocket, server: Address) -> None:
        self.sock = sock
        self.server = server
        self.credentials: LongTermCredentials | None = None
        self.data: list[bytes] = []  # what the relay delivered from the peer

    async def transact(self, build: Any) -> StunMessage:
        """Send ``build(txid)``, retransmitting; return the matching response."""
        transaction_id = new_transaction_id()
        request = build(transaction_id)
        for _ in range(TURN_RETRIES):
            self.sock.send(request, self.server)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + TURN_RTO
            while (left := deadline - loop.time()) > 0:
                try:
                    data, source = await asyncio.wait_for(self.sock.inbox.get(), left)
                except TimeoutError:
                    break
                answer = self._take(data, source)
                if answer is not None and answer.transaction_id == transaction_id:
                    return answer
        raise SystemExit("the TURN server did not answer")

    def _take(self, data: bytes, source: Address) -> StunMessage | None:
        if source != self.server:
            return None
        kind = classify_datagram(data, from_turn_server=True)
        try:
            if kind is DatagramKind.CHANNEL_DATA:
                self.data.append(parse_channel_data(data).data)
                return None
            message = parse_message(data)
        except StunError:
            return None
        if message.method == Method.DATA and message.cls is StunClass.INDICATION:
            payload = message.data()
            if payload is not None:
                self.data.append(payload)
            return None
        return message

    async def authenticated(self, build: Any) -> StunMessage:
        """A request with long-term credentials, taking a new nonce on 438 once."""
        answer = await self.transact(build)
        code = answer.error_code() if answer.cls is StunClass.ERROR else None
        if code is not None and code[0] == 438 and self.credentials is not None:
            nonce = answer.nonce()
            if nonce is not None:
                self.credentials = self.credentials.with_nonce(nonce)
                answer = await self.transact(build)
        if answer.cls is not StunClass.SUCCESS:
            raise SystemExit(f"TURN request refused: {answer.error_code()}")
        return answer

    async def allocate(self, username: str, password: str) -> Allocation:
        """The unauthenticated Allocate, its 401 (REALM, NONCE), then the authenticated one."""
        challenge = await self.transact(lambda t: allocate_request(t))
        realm, nonce = challenge.realm(), challenge.nonce()
        if challenge.error_code() is None or realm is None or nonce is None:
            raise SystemExit(f"expected a 401 with REALM and NONCE, got {challenge}")
        self.credentials = LongTermCredentials.from_password(username, password, realm, nonce)
        return allocation_from(
            await self.authenticated(lambda t: allocate_request(t, self.creds(), lifetime=600))
        )

    async def release(self) -> None:
        """Delete the allocation (Refresh with LIFETIME 0)."""
        await self.authenticated(lambda t: refresh_request(t, self.creds(), lifetime=0))

    def creds(self) -> LongTermCredentials:
        assert self.credentials is not None
        return self.credentials


async def turn(bind: str, server: Address, username: str, password: str, count: int) -> None:
    sock = await StunSocket.open(bind)
    session = _TurnSession(sock, server)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        allocation = await session.allocate(username, password)
        allocate_ms = (loop.time() - started) * 1000
        _emit(relayed=allocation.relayed, mapped=allocation.mapped, allocate_ms=allocate_ms)

        peer = cast(Address, tuple(await _read_json_line()))
        await session.authenticated(lambda t: create_permission_request(t, session.creds(), [peer]))
        await session.authenticated(
            lambda t: channel_bind_request(t, session.creds(), CHANNEL, peer)
        )
        _emit(bound=True)
        await _read_json_line()  # both sides have their permission: start sending
        for index in range(count):
            payload = f"{username.split(':', 1)[1]} {index}".encode()
            if index % 2:
                sock.send(encode_channel_data(CHANNEL, payload), server)
            else:
                sock.send(send_indication(new_transaction_id(), peer, payload), server)
        deadline = loop.time() + 10
        while len(session.data) < count and (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                data, source = await asyncio.wait_for(sock.inbox.get(), left)
                session._take(data, source)
        _emit(received=[item.decode() for item in session.data])
        await session.release()
    finally:
        sock.close()


async def rtt(bind: str, server: Address, count: int) -> None:
    """``count`` Binding round trips on one socket, one after another."""
    sock = await StunSocket.open(bind)
    try:
        samples = []
        for _ in range(count):
            event = await sock.binding(server)
            value = getattr(event, "rtt", None)
            if value is not None:
                samples.append(value * 1000)
        _emit(rtt_ms=samples)
    finally:
        sock.close()


async def allocate(bind: str, server: Address, username: str, password: str, count: int) -> None:
    """``count`` times: allocate a relay from a fresh socket, then delete it."""
    loop = asyncio.get_running_loop()
    samples = []
    for _ in range(count):
        sock = await StunSocket.open(bind)
        session = _TurnSession(sock, server)
        try:
            started = loop.time()
            await session.allocate(username, password)
            samples.append((loop.time() - started) * 1000)
            await session.release()
        finally:
            sock.close()
    _emit(allocate_ms=samples)


def main(argv: Sequence[str]) -> None:
    command, *args = argv
    if command == "stun-server":
        asyncio.run(stun_server(args[0], [int(p) for p in args[1:]]))
    elif command == "probe":
        asyncio.run(probe(args[0], args[1], [int(p) for p in args[2:]]))
    elif command == "punch":
        asyncio.run(punch(args[0], _address(args[1]), float(args[2])))
    elif command == "rtt":
        asyncio.run(rtt(args[0], _address(args[1]), int(args[2])))
    elif command == "allocate":
        asyncio.run(allocate(args[0], _address(args[1]), args[2], args[3], int(args[4])))
    elif command == "turn":
        asyncio.run(turn(args[0], _address(args[1]), args[2], args[3], int(args[4])))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
