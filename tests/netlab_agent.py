"""The program the NAT lab runs in its namespaces; the asyncio driver of the STUN/TURN clients.

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
- ``turn BIND SERVER:PORT USERNAME PASSWORD COUNT``: allocates a relay with
  :class:`mesh.turn_client.TurnClient` (the 401, then the signed Allocate),
  prints ``{"relayed": addr, "mapped": addr, "allocate_ms": ...}``, reads the
  peer's relayed address from stdin, installs a permission (``{"permitted":
  true}``), waits for a line on stdin (the peer is permitted too), sends COUNT
  numbered payloads (the first half as Send indications, then binds a channel
  and sends the rest as ChannelData), prints ``{"received": [...]}`` with what
  the peer's relay delivered, and releases the allocation.
- ``rtt BIND SERVER:PORT COUNT``: COUNT Binding round trips on one socket;
  prints ``{"rtt_ms": [...]}`` (for the benchmark).
- ``allocate BIND SERVER:PORT USERNAME PASSWORD COUNT``: COUNT allocations (each
  from a fresh socket, deleted after); prints ``{"allocate_ms": [...]}``.

:class:`StunSocket` (the sans-I/O clients on a real asyncio UDP socket, with the
demultiplexing the node's socket will do) is also what the loopback tests use.
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
from mesh.turn_client import (
    Allocated,
    AllocationFailed,
    ChannelBindFailed,
    ChannelBound,
    DataReceived,
    PermissionFailed,
    PermissionInstalled,
    Released,
    TurnClient,
    TurnEvent,
)
from protocol.stun import Address, DatagramKind, classify_datagram

__all__ = ["StunSocket", "main"]

PUNCH_INTERVAL = 0.05


class StunSocket(asyncio.DatagramProtocol):
    """One UDP socket shared by a :class:`StunClient`, an optional :class:`TurnClient`, and
    whatever else arrives: the demultiplexing the node's socket does.

    What came from the TURN server goes to the TURN client (what peers sent lands
    in ``relayed_data``, its other events in ``turn_events``); STUN answers go to
    the STUN client; everything else lands in ``inbox`` as ``(data, source)``.
    :meth:`binding` runs one Binding transaction to the end.
    """

    def __init__(self, client: StunClient | None = None) -> None:
        self.client = client or StunClient(Retransmission(0.1, 5, 4))
        self.turn: TurnClient | None = None
        self.inbox: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.turn_events: asyncio.Queue[TurnEvent] = asyncio.Queue()
        self.relayed_data: asyncio.Queue[DataReceived] = asyncio.Queue()
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
        if self.turn is not None and self.turn.receive_datagram(data, source, now):
            self.pump()
        elif classify_datagram(data, from_turn_server=False) is DatagramKind.STUN and (
            self.client.receive_datagram(data, source, now)
        ):
            self.pump()
        else:
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
        self.pump()
        try:
            return await asyncio.wait_for(waiter, 60)
        finally:
            self._waiters.pop(transaction_id, None)

    async def turn_event(self, *kinds: type) -> TurnEvent:
        """The next TURN event of one of ``kinds`` (others are dropped); fails on a failure."""
        while True:
            event = await asyncio.wait_for(self.turn_events.get(), 30)
            if isinstance(event, kinds):
                return event
            if isinstance(event, AllocationFailed | PermissionFailed | ChannelBindFailed):
                raise SystemExit(f"TURN failed: {event}")

    def pump(self) -> None:
        """Send what the clients want sent, hand out their events, re-arm the timer."""
        now = asyncio.get_running_loop().time()
        for data, destination in self.client.datagrams_to_send(now):
            self.send(data, destination)
        while (event := self.client.next_event()) is not None:
            waiter = self._waiters.get(event.transaction_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
        due = self.client.get_timer()
        if self.turn is not None:
            for data, destination in self.turn.datagrams_to_send(now):
                self.send(data, destination)
            while (turn_event := self.turn.next_event()) is not None:
                if isinstance(turn_event, DataReceived):
                    self.relayed_data.put_nowait(turn_event)
                else:
                    self.turn_events.put_nowait(turn_event)
            turn_due = self.turn.get_timer()
            if turn_due is not None:
                due = turn_due if due is None else min(due, turn_due)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if due is not None:
            self._timer = asyncio.get_running_loop().call_at(due, self._on_timer, due)

    def _on_timer(self, due: float) -> None:
        self._timer = None
        now = max(asyncio.get_running_loop().time(), due)
        self.client.handle_timer(now)
        if self.turn is not None:
            self.turn.handle_timer(now)
        self.pump()


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


async def _allocated(sock: StunSocket, server: Address, username: str, password: str) -> Allocated:
    loop = asyncio.get_running_loop()
    sock.turn = TurnClient(server, username, password, retransmission=Retransmission(0.2, 6, 4))
    sock.turn.allocate(loop.time())
    sock.pump()
    return cast(Allocated, await sock.turn_event(Allocated))


async def _release(sock: StunSocket) -> None:
    assert sock.turn is not None
    sock.turn.release(asyncio.get_running_loop().time())
    sock.pump()
    await sock.turn_event(Released)


async def turn(bind: str, server: Address, username: str, password: str, count: int) -> None:
    sock = await StunSocket.open(bind)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        allocation = await _allocated(sock, server, username, password)
        allocate_ms = (loop.time() - started) * 1000
        _emit(relayed=allocation.relayed, mapped=allocation.mapped, allocate_ms=allocate_ms)
        client = sock.turn
        assert client is not None

        peer = cast(Address, tuple(await _read_json_line()))
        client.permit(peer, loop.time())
        sock.pump()
        await sock.turn_event(PermissionInstalled)
        _emit(permitted=True)
        await _read_json_line()  # both sides have their permission: start sending
        name = username.split(":", 1)[1]
        half = count // 2
        for index in range(half):  # as Send indications
            client.send(peer, f"{name} {index}".encode())
        client.bind_channel(peer, loop.time())
        sock.pump()
        await sock.turn_event(ChannelBound)
        for index in range(half, count):  # as ChannelData
            client.send(peer, f"{name} {index}".encode())
        sock.pump()
        received: list[str] = []
        deadline = loop.time() + 10
        while len(received) < count and (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                event = await asyncio.wait_for(sock.relayed_data.get(), left)
                if event.peer == peer:
                    received.append(event.data.decode())
        _emit(received=received)
        await _release(sock)
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
        try:
            started = loop.time()
            await _allocated(sock, server, username, password)
            samples.append((loop.time() - started) * 1000)
            await _release(sock)
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
