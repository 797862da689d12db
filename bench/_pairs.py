"""Two endpoints in two processes exchanging paced position updates: the movement baselines.

An *endpoint* child binds one UDP socket on 127.0.0.1, is told its peer, then both sides send
``rate`` updates a second to each other for a fixed window whose start time is given in the
shared monotonic clock (``time.perf_counter_ns`` is CLOCK_MONOTONIC, the same in every process
on the machine), so one-way latency is ``receive time - send time`` with no clock sync.

Implementations: raw asyncio UDP, and a bare aioquic DATAGRAM pair (one ``QuicConnection`` per
socket, the minimal driver: receive, drain events, flush, re-arm the timer). ``bench.movement``
adds the product's ``PeerNode`` behind the same interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from bench._common import BenchError, percentiles_ms
from bench._proc import Child, Profiler

__all__ = [
    "Endpoint",
    "Pair",
    "PathReport",
    "PayloadStamp",
    "Placed",
    "Placement",
    "pin_cpus",
    "endpoint_child",
    "self_signed_cert",
    "QuicEndpoint",
    "UdpEndpoint",
]

_STAMP = struct.Struct("!Iq")


class PayloadStamp:
    """Pack/unpack ``(seq, send_ns)`` at the head of a fixed-size payload."""

    def __init__(self, size: int) -> None:
        self.size = max(size, _STAMP.size)
        self._pad = b"\x00" * (self.size - _STAMP.size)

    def pack(self, seq: int, send_ns: int) -> bytes:
        return _STAMP.pack(seq & 0xFFFFFFFF, send_ns) + self._pad

    @staticmethod
    def unpack(data: bytes) -> tuple[int, int]:
        seq, send_ns = _STAMP.unpack_from(data)
        return int(seq), int(send_ns)


OnUpdate = Callable[[int, int], None]
"""Called by an endpoint for each update it receives: ``(seq, send_ns)``."""


class Endpoint(Protocol):
    """What the pair driver needs from one side."""

    async def open(self, on_update: OnUpdate) -> tuple[str, int]:
        """Bind and return the local address."""
        ...

    async def connect(
        self, peer: tuple[str, int], dial: bool, credential: str | None = None
    ) -> None:
        """Get ready to exchange with ``peer`` (holding ``credential``, if it has one); the side
        with ``dial`` True opens the path."""
        ...

    def send_update(self, seq: int, send_ns: int) -> None: ...

    async def close(self) -> None: ...


PathReport = Callable[[], dict[str, Any]]
"""An endpoint may have ``path_report``: what its path looks like now (which path, bytes so
far); called just before and just after each measured window, outside the CPU figure."""


# --- raw UDP -------------------------------------------------------------------------------


class _UdpProto(asyncio.DatagramProtocol):
    def __init__(self, on_data: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_data = on_data

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_data(data, addr)


async def _bind_loopback(
    on_data: Callable[[bytes, tuple[str, int]], None],
) -> tuple[asyncio.DatagramTransport, tuple[str, int]]:
    """A UDP socket on 127.0.0.1:0 handing every datagram to ``on_data``, and its address."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _UdpProto(on_data), local_addr=("127.0.0.1", 0)
    )
    addr = transport.get_extra_info("sockname")
    return transport, (str(addr[0]), int(addr[1]))


class UdpEndpoint:
    """Raw asyncio UDP: one ``sendto`` per update, the floor of any movement path."""

    def __init__(self, payload_size: int) -> None:
        self.stamp = PayloadStamp(payload_size)
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: tuple[str, int] | None = None

    async def open(self, on_update: OnUpdate) -> tuple[str, int]:
        def on_data(data: bytes, addr: tuple[str, int]) -> None:
            seq, sent = PayloadStamp.unpack(data)
            on_update(seq, sent)

        self.transport, addr = await _bind_loopback(on_data)
        return addr

    async def connect(
        self, peer: tuple[str, int], dial: bool, credential: str | None = None
    ) -> None:
        self.peer = peer

    def send_update(self, seq: int, send_ns: int) -> None:
        assert self.transport is not None
        self.transport.sendto(self.stamp.pack(seq, send_ns), self.peer)

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# --- bare aioquic ----------------------------------------------------------------------------


def self_signed_cert() -> tuple[bytes, bytes]:
    """A throwaway P-256 certificate and key (PEM) for the bare QUIC server."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


class QuicEndpoint:
    """A bare aioquic DATAGRAM pair side: one QuicConnection on its own socket, no extras."""

    def __init__(self, payload_size: int) -> None:
        self.stamp = PayloadStamp(payload_size)
        self.transport: asyncio.DatagramTransport | None = None
        self.conn: Any = None
        self.peer: tuple[str, int] | None = None
        self.connected = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._on_update: OnUpdate | None = None
        self._server_config: Any = None

    async def open(self, on_update: OnUpdate) -> tuple[str, int]:
        self._on_update = on_update
        config = _server_configuration()
        self._server_config = config
        self.transport, addr = await _bind_loopback(self._datagram_received)
        return addr

    async def connect(
        self, peer: tuple[str, int], dial: bool, credential: str | None = None
    ) -> None:
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.connection import QuicConnection

        self.peer = peer
        if dial:
            config = QuicConfiguration(
                is_client=True, alpn_protocols=["bench"], max_datagram_frame_size=65536
            )
            config.verify_mode = ssl.CERT_NONE
            self.conn = QuicConnection(configuration=config)
            self.conn.connect(peer, now=asyncio.get_running_loop().time())
            self._transmit()
        await asyncio.wait_for(self.connected.wait(), 10.0)

    def _datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        if self.conn is None:
            from aioquic.buffer import Buffer  # type: ignore[attr-defined]  # re-exported
            from aioquic.quic.connection import QuicConnection
            from aioquic.quic.packet import pull_quic_header

            header = pull_quic_header(
                Buffer(data=data), host_cid_length=self._server_config.connection_id_length
            )
            self.conn = QuicConnection(
                configuration=self._server_config,
                original_destination_connection_id=header.destination_cid,
            )
            self.peer = addr
        self.conn.receive_datagram(data, addr, now=loop.time())
        self._drain()
        self._transmit()

    def _drain(self) -> None:
        from aioquic.quic import events

        while (event := self.conn.next_event()) is not None:
            if isinstance(event, events.DatagramFrameReceived):
                seq, sent = PayloadStamp.unpack(event.data)
                assert self._on_update is not None
                self._on_update(seq, sent)
            elif isinstance(event, events.HandshakeCompleted):
                self.connected.set()

    def _transmit(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        for data, addr in self.conn.datagrams_to_send(now=loop.time()):
            self.transport.sendto(data, addr)
        self._drain()
        timer_at = self.conn.get_timer()
        if self._timer is not None and self._timer_at != timer_at:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and timer_at is not None:
            self._timer = loop.call_at(timer_at, self._handle_timer)
        self._timer_at = timer_at

    def _handle_timer(self) -> None:
        loop = asyncio.get_running_loop()
        timer_at = self._timer_at if self._timer_at is not None else loop.time()
        self._timer = None
        self._timer_at = None
        self.conn.handle_timer(now=max(loop.time(), timer_at))
        self._drain()
        self._transmit()

    def send_update(self, seq: int, send_ns: int) -> None:
        self.conn.send_datagram_frame(self.stamp.pack(seq, send_ns))
        self._transmit()

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self._transmit()
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()


def _server_configuration() -> Any:
    import tempfile

    from aioquic.quic.configuration import QuicConfiguration

    cert, key = self_signed_cert()
    config = QuicConfiguration(
        is_client=False, alpn_protocols=["bench"], max_datagram_frame_size=65536
    )
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = f"{tmp}/cert.pem", f"{tmp}/key.pem"
        with open(cert_path, "wb") as fh:
            fh.write(cert)
        with open(key_path, "wb") as fh:
            fh.write(key)
        config.load_cert_chain(cert_path, key_path)
    return config


# --- the child and the driver -----------------------------------------------------------------

EndpointFactory = Callable[[dict[str, Any]], Awaitable[Endpoint]]


async def endpoint_child(ctl: Any, factory: EndpointFactory, options: dict[str, Any]) -> None:
    """Child body: open an endpoint, then answer "connect", "exchange" and "stop".

    An endpoint may carry ``credential`` (handed to the other side's ``connect``) and a
    ``sent_log`` dict (seq -> send time) when its payload cannot carry the send time; then it
    reports updates with ``send_ns`` -1 and the driver joins the two logs by sequence number.
    """
    endpoint = await factory(options)
    received: list[tuple[int, int, int]] = []

    def on_update(seq: int, send_ns: int) -> None:
        received.append((seq, send_ns, time.perf_counter_ns()))

    addr = await endpoint.open(on_update)
    ctl.send(("ready", (addr, getattr(endpoint, "credential", None))))

    async def connect(arg: Any) -> None:
        peer, credential, dial = arg
        await endpoint.connect(tuple(peer), dial, credential)

    async def exchange(arg: dict[str, Any]) -> dict[str, Any]:
        return await _exchange(endpoint, received, arg)

    try:
        await ctl.serve({"connect": connect, "exchange": exchange})
    finally:
        await endpoint.close()


async def _exchange(
    endpoint: Endpoint, received: list[tuple[int, int, int]], arg: dict[str, Any]
) -> dict[str, Any]:
    """Send at ``rate`` from ``t0 - warm`` to ``t0 + duration``; measure over [t0, t0+duration]."""
    loop = asyncio.get_running_loop()
    rate, t0_ns, dur, warm = arg["rate"], arg["t0_ns"], arg["duration"], arg["warm"]
    period_ns = int(1e9 / rate)
    start_ns = t0_ns - int(warm * 1e9)
    end_ns = t0_ns + int(dur * 1e9)
    received.clear()
    sent_log: dict[int, int] | None = getattr(endpoint, "sent_log", None)
    if sent_log is not None:
        sent_log.clear()
    seq = 0
    cpu0 = cpu1 = 0.0
    done = loop.create_future()

    def at_ns(ns: int) -> float:
        return loop.time() + (ns - time.perf_counter_ns()) / 1e9

    profiler = Profiler()
    report: PathReport | None = getattr(endpoint, "path_report", None)
    reports: dict[str, Any] = {}

    def mark_start() -> None:
        nonlocal cpu0
        if report is not None:
            reports["before"] = report()
        cpu0 = time.process_time()
        profiler.start()

    def mark_end() -> None:
        nonlocal cpu1
        cpu1 = time.process_time()
        profiler.stop(f"pair-{type(endpoint).__name__}")
        if report is not None:
            reports["after"] = report()
        done.set_result(None)

    def tick() -> None:
        nonlocal seq
        if time.perf_counter_ns() >= end_ns:
            return
        endpoint.send_update(seq, time.perf_counter_ns())
        seq += 1
        loop.call_at(at_ns(start_ns + seq * period_ns), tick)

    loop.call_at(at_ns(start_ns), tick)
    loop.call_at(at_ns(t0_ns), mark_start)
    loop.call_at(at_ns(end_ns), mark_end)
    await done
    await asyncio.sleep(0.2)  # let the last updates of the window land for latency figures
    return {
        "cpu": cpu1 - cpu0,
        "sent": seq,
        "received": list(received),
        "sent_log": dict(sent_log) if sent_log is not None else None,
        "path": reports or None,
        "t0_ns": t0_ns,
        "end_ns": end_ns,
    }


def _side(mine: dict[str, Any], theirs: dict[str, Any]) -> tuple[int, list[int]]:
    """Updates this side received in the window, and one-way latencies of those sent in it."""
    t0, end = mine["t0_ns"], mine["end_ns"]
    log = theirs["sent_log"]
    delivered = sum(1 for r in mine["received"] if t0 <= r[2] < end)
    lat: list[int] = []
    for seq, send_ns, recv_ns in mine["received"]:
        if send_ns < 0 and log is not None:
            send_ns = log.get(seq, -1)
        if t0 <= send_ns < end:
            lat.append(recv_ns - send_ns)
    return delivered, lat


class Pair:
    """Two endpoint children, connected once, exchanging updates over one or more windows.

    A benchmark comparing two paths keeps one ``Pair`` of each open and alternates their
    windows (:meth:`exchange`), so a burst of someone else's work on the machine lands in
    one window of one path, not in a whole path's figure. Close it (or use ``with``).

    ``a`` listens, ``b`` dials; ``dialler_options`` (default: ``options``) are ``b``'s.
    """

    def __init__(
        self,
        factory: EndpointFactory,
        options: dict[str, Any],
        *,
        kind: str,
        dialler_options: dict[str, Any] | None = None,
    ) -> None:
        b_options = options if dialler_options is None else dialler_options
        self.a = Child(endpoint_child, factory, options, kind=kind, name="pair-a")
        try:
            self.b = Child(endpoint_child, factory, b_options, kind=kind, name="pair-b")
        except BaseException:
            self.a.close()
            raise
        try:
            _, (addr_a, cred_a) = self.a.recv(30)
            _, (addr_b, cred_b) = self.b.recv(30)
            # The listener first, so the dialler's Initial finds it ready.
            self.a.send("connect", (addr_b, cred_b, False))
            self.b.call("connect", (addr_a, cred_a, True), timeout=30)
            self.a.reply(30)
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> tuple[int, int]:
        """The listener's and the dialler's process ids."""
        a, b = self.a.pid, self.b.pid
        if a is None or b is None:
            raise BenchError("a pair child has no process id")
        return a, b

    def exchange(self, *, rate: float, duration: float, warm: float = 0.5) -> dict[str, Any]:
        """One window: ``rate`` updates/s each way for ``warm`` + ``duration`` seconds,
        measured over the last ``duration``; CPU per delivered update and one-way latency.
        ``paths``: each side's ``path_report`` before and after the window (None without)."""
        t0_ns = time.perf_counter_ns() + int((warm + 0.3) * 1e9)
        arg = {"rate": rate, "t0_ns": t0_ns, "duration": duration, "warm": warm}
        self.a.send("exchange", arg)
        rb = self.b.call("exchange", arg, timeout=duration + warm + 30)
        ra = self.a.reply(duration + warm + 30)
        got_a, lat_a = _side(ra, rb)
        got_b, lat_b = _side(rb, ra)
        delivered = got_a + got_b
        cpu = ra["cpu"] + rb["cpu"]
        expected = rate * duration * 2
        return {
            "cpu_per_update_us": (cpu / delivered * 1e6) if delivered else float("nan"),
            "cpu_s": cpu,
            "delivered": delivered,
            "delivery_ratio": delivered / expected if expected else float("nan"),
            "cpu_share": cpu / duration,
            "paths": {"a": ra["path"], "b": rb["path"]},
            **percentiles_ms(lat_a + lat_b),
        }

    def close(self) -> None:
        self.a.close()
        self.b.close()

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- placement -----------------------------------------------------------------------------


class Placed(Protocol):
    """Two processes to place: a :class:`~bench._pairs.Pair`'s listener and dialler."""

    @property
    def pids(self) -> tuple[int, int]: ...


class Placement:
    """Where pairs' processes run: each pair's listener on one CPU and its dialler on
    another (pinned), or anywhere the benchmark may run (unpinned).

    Pinned, every update crosses from one CPU to the other, as between two machines, and
    the scheduler cannot sometimes run the receiver on the sender's warm core and sometimes
    not: per-update CPU figures are steadier, and placed alike for every pair compared.
    """

    def __init__(self, pairs: Sequence[Placed]) -> None:
        self.pairs = pairs
        self.allowed, self.cpus = pin_cpus()

    def pin(self) -> None:
        assert self.cpus is not None
        for pair in self.pairs:
            for pid, cpu in zip(pair.pids, self.cpus, strict=True):
                _set_affinity(pid, {cpu})

    def unpin(self) -> None:
        for pair in self.pairs:
            for pid in pair.pids:
                _set_affinity(pid, self.allowed)


def pin_cpus() -> tuple[set[int], tuple[int, int] | None]:
    """The CPUs this process may run on, and the listeners' and the diallers' CPU (None:
    fewer than two, or no affinity control here: nothing is pinned)."""
    if not hasattr(os, "sched_setaffinity"):
        return set(), None
    allowed = os.sched_getaffinity(0)
    first, *rest = sorted(allowed)
    return allowed, (first, rest[0]) if rest else None


def _set_affinity(pid: int, cpus: set[int]) -> None:
    """Every thread of process ``pid`` onto ``cpus`` (a thread may end meanwhile)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, cpus)
