"""A light HTTP/1.1 load generator and latency probe over raw keep-alive sockets.

The aiohttp client saturates before an aiohttp server does, so the REST figures come from this
instead: prebuilt request bytes, ``depth`` requests pipelined on each of ``connections``
keep-alive connections, responses framed by Content-Length with one regex, no parsing beyond the
status code. It runs in its own process (``http_child``) and reports its own CPU share so a
reader can see it was not the bottleneck. With ``interval`` set it is a probe instead: one
request at a time on one connection, every ``interval`` seconds, each latency recorded with
``time.perf_counter_ns`` in this process.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from typing import Any

from bench._common import percentiles_ms

__all__ = ["build_request", "http_child"]

_CL = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


def build_request(
    method: str,
    path: str,
    host: str,
    port: int,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    """One HTTP/1.1 keep-alive request as bytes."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
    for key, value in (headers or {}).items():
        lines.append(f"{key}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Stats:
    def __init__(self) -> None:
        self.responses = 0
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.latencies: list[int] = []
        self.running = True


class _Conn(asyncio.Protocol):
    """One keep-alive connection keeping ``depth`` requests in flight."""

    def __init__(self, requests: list[bytes], depth: int, stats: _Stats) -> None:
        self.requests = requests
        self.next_req = 0
        self.depth = depth
        self.stats = stats
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()
        self.in_flight = 0
        self.sent_at: list[int] = []
        self.on_response: Any = None

    def _take(self, n: int) -> bytes:
        out = []
        for _ in range(n):
            out.append(self.requests[self.next_req])
            self.next_req = (self.next_req + 1) % len(self.requests)
        return b"".join(out)

    def fire(self, n: int) -> None:
        assert self.transport is not None
        if n <= 0 or self.transport.is_closing():
            return
        now = time.perf_counter_ns()
        self.sent_at.extend([now] * n)
        self.in_flight += n
        self.transport.write(self._take(n))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        if self.depth:
            self.fire(self.depth)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos = 0
        done = 0
        stats = self.stats
        while True:
            head_end = buf.find(b"\r\n\r\n", pos)
            if head_end < 0:
                break
            match = _CL.search(buf, pos, head_end + 2)
            if match is None:
                stats.errors += 1  # chunked or malformed: this generator does not do those
                assert self.transport is not None
                self.transport.close()
                return
            end = head_end + 4 + int(match.group(1))
            if len(buf) < end:
                break
            stats.statuses[int(buf[pos + 9 : pos + 12])] += 1
            pos = end
            done += 1
        self.buf = buf[pos:]
        if done:
            now = time.perf_counter_ns()
            stats.responses += done
            self.in_flight -= done
            sent, self.sent_at = self.sent_at[:done], self.sent_at[done:]
            if self.on_response is not None:
                stats.latencies.extend(now - s for s in sent)
                self.on_response()
            elif stats.running:
                self.fire(done)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def _open(host: str, port: int, proto: _Conn) -> _Conn:
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: proto, host, port)
    return proto


async def _load(opts: dict[str, Any], duration: float) -> dict[str, Any]:
    stats = _Stats()
    conns: list[_Conn] = []
    for _ in range(opts["connections"]):
        conns.append(await _open(opts["host"], opts["port"], _Conn(opts["requests"], 0, stats)))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for conn in conns:
        conn.fire(opts["depth"])
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        # Reopen connections the server closed, so a close never ends the run early.
        await asyncio.sleep(min(0.05, max(0.0, end - time.perf_counter())))
        for i, conn in enumerate(conns):
            if conn.lost.done():
                stats.errors += 1
                fresh = _Conn(opts["requests"], opts["depth"], stats)
                conns[i] = await _open(opts["host"], opts["port"], fresh)
    stats.running = False
    responses = stats.responses
    cpu1, wall1 = time.process_time(), time.perf_counter()
    for conn in conns:
        assert conn.transport is not None
        conn.transport.close()
    return {
        "responses": responses,
        "rate": responses / (wall1 - wall0),
        "statuses": dict(stats.statuses),
        "errors": stats.errors,
        "gen_cpu_share": (cpu1 - cpu0) / (wall1 - wall0),
    }


async def _probe(opts: dict[str, Any], duration: float) -> dict[str, Any]:
    stats = _Stats()
    conn = await _open(opts["host"], opts["port"], _Conn(opts["requests"], 0, stats))
    loop = asyncio.get_running_loop()
    answered = asyncio.Event()
    conn.on_response = answered.set
    interval = opts["interval"]
    end = time.perf_counter() + duration
    next_at = loop.time()
    while time.perf_counter() < end:
        answered.clear()
        conn.fire(1)
        await asyncio.wait_for(answered.wait(), 30.0)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    assert conn.transport is not None
    conn.transport.close()
    return {
        **percentiles_ms(stats.latencies),
        "statuses": dict(stats.statuses),
        "errors": stats.errors,
    }


async def http_child(ctl: Any, opts: dict[str, Any]) -> None:
    """Child body. ``opts``: host, port, requests (list of request bytes, used round-robin),
    connections, depth; "run" takes a duration and returns throughput; "probe" (with
    ``opts["interval"]``) returns latency percentiles."""
    ctl.send(("ready", None))

    async def run(duration: float) -> dict[str, Any]:
        return await _load(opts, duration)

    async def probe(duration: float) -> dict[str, Any]:
        return await _probe(opts, duration)

    await ctl.serve({"run": run, "probe": probe})
