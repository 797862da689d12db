"""STUN/TURN: codec speed vs aioice, Binding round trip to the lobby's responder, NAT-lab figures.

``python -m bench.stun [--quick]`` measures, in one run:

- codec: one Binding exchange (encode request, parse it, encode the success answer,
  parse it and read XOR-MAPPED-ADDRESS) a second, ours against ``aioice.stun`` doing
  the same (baseline). Target: ratio >= 1 (a strict codec need not be slower);
- responder: CPU per answered Binding request in :class:`lobby.stun.StunResponder`
  (framing check, rate limit, parse, answer), no socket;
- loopback round trip: sequential Binding transactions from
  :class:`mesh.stun_client.StunClient` on an asyncio UDP socket to the lobby's
  :class:`lobby.stun.StunServer` in the same loop, p50/p99, against a bare UDP
  echo round trip on the same loop (baseline) — the ratio is what the STUN code
  adds to the syscalls and the loop;
- NAT lab (full mode, as root with ``nft`` and ``turnserver``): Binding round trip
  from behind a symmetric NAT to the responder in the "internet" namespace, and the
  time :class:`mesh.turn_client.TurnClient` takes to allocate a relay on coturn
  with REST credentials (the 401 round trip plus the signed Allocate), p50/p99.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, cast

from bench._common import latency_rows, make_result, percentile, percentiles_ms, row, run_async
from bench.run import main_one
from lobby.stun import StunResponder, StunServer
from mesh.stun_client import BindingSucceeded, StunClient
from protocol.stun import (
    binding_request,
    binding_success,
    new_transaction_id,
    parse_message,
)

__all__ = ["run"]

TITLE = "STUN/TURN: codec vs aioice, Binding round trip, NAT lab"
SOFTWARE = "bench"
MAPPED = ("203.0.113.77", 40123)


def _best_rate(fn: Any, n: int, rounds: int = 5) -> float:
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - start))
    return best


def _ours() -> None:
    txid = new_transaction_id()
    request = parse_message(binding_request(txid, software=SOFTWARE))
    answer = parse_message(binding_success(request.transaction_id, MAPPED, software=SOFTWARE))
    answer.xor_mapped_address()


def _aioice() -> Any:
    try:
        from aioice import stun as ai
    except ImportError:
        return None

    def exchange() -> None:
        request = ai.Message(ai.Method.BINDING, ai.Class.REQUEST)
        request.attributes["SOFTWARE"] = SOFTWARE
        request.add_fingerprint()
        parsed = ai.parse_message(bytes(request))
        answer = ai.Message(ai.Method.BINDING, ai.Class.RESPONSE, parsed.transaction_id)
        answer.attributes["XOR-MAPPED-ADDRESS"] = MAPPED
        answer.attributes["SOFTWARE"] = SOFTWARE
        answer.add_fingerprint()
        ai.parse_message(bytes(answer)).attributes["XOR-MAPPED-ADDRESS"]

    return exchange


def _responder_us(n: int) -> float:
    responder = StunResponder(rate=1e9, burst=1e9, max_sources=10, clock=time.time)
    request = binding_request(new_transaction_id(), software=SOFTWARE)
    source = ("198.51.100.1", 5000)
    start = time.process_time()
    for _ in range(n):
        responder.answer(request, source)
    return (time.process_time() - start) / n * 1e6


class _Pinger(asyncio.DatagramProtocol):
    """The StunClient on a socket, one transaction at a time; or a bare echo client."""

    def __init__(self) -> None:
        self.client = StunClient()
        self.transport: asyncio.DatagramTransport | None = None
        self.waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


async def _round_trips(n: int) -> tuple[list[int], list[int]]:
    """(STUN Binding round trips, bare echo round trips) in nanoseconds, interleaved."""
    loop = asyncio.get_running_loop()
    server = StunServer(StunResponder(rate=1e9, burst=1e9, max_sources=10, clock=time.time))
    stun_port = await server.start("127.0.0.1", 0)
    echo_transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    echo_addr = echo_transport.get_extra_info("sockname")[:2]
    transport, pinger = await loop.create_datagram_endpoint(_Pinger, local_addr=("127.0.0.1", 0))
    stun_addr = ("127.0.0.1", stun_port)
    stun_ns: list[int] = []
    echo_ns: list[int] = []
    payload = bytes(28)  # the size of a bare Binding request with FINGERPRINT
    try:
        for _ in range(n):
            # STUN: request, send, wait, hand to the client, read the event
            start = time.perf_counter_ns()
            pinger.waiter = loop.create_future()
            pinger.client.request(stun_addr, loop.time())
            for data, addr in pinger.client.datagrams_to_send(loop.time()):
                transport.sendto(data, addr)
            reply = await asyncio.wait_for(pinger.waiter, 5)
            pinger.client.receive_datagram(reply, stun_addr, loop.time())
            event = pinger.client.next_event()
            stun_ns.append(time.perf_counter_ns() - start)
            if not isinstance(event, BindingSucceeded):
                raise RuntimeError(f"Binding failed on loopback: {event}")
            # baseline: the same size, echoed
            start = time.perf_counter_ns()
            pinger.waiter = loop.create_future()
            transport.sendto(payload, echo_addr)
            await asyncio.wait_for(pinger.waiter, 5)
            echo_ns.append(time.perf_counter_ns() - start)
    finally:
        transport.close()
        echo_transport.close()
        await server.close()
    return stun_ns, echo_ns


async def _lab(samples: int) -> dict[str, Any]:
    """STUN round trip and TURN allocation time in the NAT lab (root, nft, coturn)."""
    import tempfile
    from pathlib import Path

    from protocol.turn import turn_rest_credentials
    from tests.netlab import NatLab, NatType, natlab_unavailable_reason

    reason = natlab_unavailable_reason(turn=True)
    if reason is not None:
        return {"skipped": reason}
    secret = os.urandom(16).hex()
    with tempfile.TemporaryDirectory() as tmp:
        async with NatLab() as lab:
            host = lab.add_host(lab.add_router(NatType.SYMMETRIC))
            ip = lab.server_address
            server = await lab.agent(lab.internet, "stun-server", ip, "3479")
            await server.read()
            await lab.coturn(secret, 3478, Path(tmp))
            for _ in range(10):  # until coturn answers a Binding
                probe = await lab.agent(lab.internet, "probe", ip, ip, "3478")
                if await probe.wait(30) == 0:
                    break
            rtt = await lab.agent(host.namespace, "rtt", host.address, f"{ip}:3479", str(samples))
            stun_ms = (await rtt.read(120))["rtt_ms"]
            creds = turn_rest_credentials(secret, "bench", now=time.time(), ttl=600)
            alloc = await lab.agent(
                host.namespace, "allocate", host.address, f"{ip}:3478",
                creds.username, creds.password, str(max(20, samples // 10)),
            )  # fmt: skip
            allocate_ms = (await alloc.read(120))["allocate_ms"]
    return {"stun_ms": stun_ms, "allocate_ms": allocate_ms}


def run(quick: bool) -> dict[str, Any]:
    n_codec = 2_000 if quick else 20_000
    ours = _best_rate(_ours, n_codec)
    aioice = _aioice()
    theirs = _best_rate(aioice, n_codec) if aioice is not None else None
    responder_us = _responder_us(n_codec)
    stun_ns, echo_ns = run_async(_round_trips(300 if quick else 3_000), "asyncio")
    rows = [
        row(
            loop="n/a",
            metric="Binding exchange (encode+parse both ways) per second",
            value=ours,
            unit="ops/s",
            baseline=theirs,
            baseline_name="aioice.stun",
            target=("ratio", ">=", 1.0) if theirs is not None else None,
        ),
        row(loop="n/a", metric="responder CPU per answered request", value=responder_us, unit="us"),
    ]
    rows += latency_rows(
        "asyncio",
        "loopback Binding round trip {q}",
        percentiles_ms(stun_ns),
        percentiles_ms(echo_ns),
        "bare UDP echo",
    )
    figures: dict[str, Any] = {"codec_ops": ours, "aioice_ops": theirs}
    notes = [
        "the loopback round trip runs client and responder in one process and loop; the "
        "baseline echoes a datagram of the same size on the same loop.",
    ]
    if not quick:
        lab = asyncio.run(_lab(200))
        if "skipped" in lab:
            notes.append(f"NAT lab not measured: {lab['skipped']}")
        else:
            for name, samples in (("stun_ms", lab["stun_ms"]), ("allocate_ms", lab["allocate_ms"])):
                what = (
                    "NAT lab Binding round trip (symmetric NAT to the lobby responder)"
                    if name == "stun_ms"
                    else "NAT lab TURN allocation on coturn (401 + Allocate)"
                )
                for q in (50, 99):
                    rows.append(
                        row(
                            loop="asyncio",
                            metric=f"{what} p{q}",
                            value=percentile(samples, q),
                            unit="ms",
                        )
                    )
                figures[f"lab_{name}_n"] = len(samples)
            notes.append(
                "NAT lab figures include two veth hops and nftables NAT each way; each sample "
                "is from one agent process in the host's namespace."
            )
    return make_result("stun", TITLE, rows, figures=figures, notes=notes)


if __name__ == "__main__":
    main_one("stun")
