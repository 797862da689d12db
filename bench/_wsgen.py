"""Many WebSocket clients in one process over raw sockets: the lobby benchmarks' load.

A client here is an ``asyncio.Protocol`` of a few hundred bytes: an HTTP upgrade, then frame
parsing that only counts text frames, answers pings and records a latency when a frame carries
an ``@T<perf_counter_ns>@`` stamp (the sender's clock; both ends share the machine's monotonic
clock). That keeps 10,000 connections cheap enough for two or three generator processes.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import time
from typing import Any

from bench._common import percentiles_ms

__all__ = ["STAMP_FORMAT", "ws_clients_child", "ws_frame"]

#: Put ``STAMP_FORMAT.format(ns)`` in a message to have receivers record its latency.
STAMP_FORMAT = "@T{}@"
_STAMP = re.compile(rb"@T(\d+)@")
_MASK = b"\x00\x00\x00\x00"


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (a zero mask: the bytes go out as they are)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + _MASK + payload


class _Stats:
    def __init__(self) -> None:
        self.texts = 0
        self.latencies: list[int] = []
        self.closed = 0


class _Client(asyncio.Protocol):
    def __init__(self, request: bytes, hello: bytes | None, stats: _Stats) -> None:
        self.request = request
        self.hello = hello
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.upgraded = asyncio.get_running_loop().create_future()
        self.buf = b""
        self.open = False
        self.first_text: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            status = buf[:end].split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                if not self.upgraded.done():
                    self.upgraded.set_exception(ConnectionError(buf[:300].decode("latin-1")))
                assert self.transport is not None
                self.transport.close()
                return
            self.open = True
            buf = buf[end + 4 :]
            if self.hello is not None:
                self.send_text(self.hello)
            if not self.upgraded.done():
                self.upgraded.set_result(None)
        self.buf = self._frames(buf)

    def _frames(self, buf: bytes) -> bytes:
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if size - pos < head + n:
                break
            opcode = b0 & 0x0F
            payload = buf[pos + head : pos + head + n]
            pos += head + n
            if opcode == 1:
                self.stats.texts += 1
                if not self.first_text.done():
                    self.first_text.set_result(payload)
                if b"@T" in payload:
                    now = time.perf_counter_ns()
                    for stamp in _STAMP.findall(payload):
                        self.stats.latencies.append(now - int(stamp))
            elif opcode == 9 and self.transport is not None:
                self.transport.write(ws_frame(10, payload))
            elif opcode == 8 and self.transport is not None:
                self.transport.close()
        return buf[pos:]

    def send_text(self, text: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(ws_frame(1, text))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.stats.closed += 1
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed before upgrade: {exc}"))


def _upgrade_request(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def ws_clients_child(ctl: Any, host: str, port: int) -> None:
    """Child body. Commands: "connect" {specs: [{path, headers, hello, port}], concurrency,
    wait_first, port}, "reset", "counts", "send" {index, text, rate, duration}, "say" {index,
    text} (one frame now), "alive", "drop" (close every client and forget them; indexes of
    "send" and "say" start again at 0).

    ``port`` in "connect" overrides the one the child was started with (a server that came
    back on another port); a spec's own ``port`` overrides both."""
    loop = asyncio.get_running_loop()
    stats = _Stats()
    clients: list[_Client] = []
    ctl.send(("ready", None))

    async def connect(arg: dict[str, Any]) -> dict[str, Any]:
        sem = asyncio.Semaphore(arg.get("concurrency", 100))
        errors: list[str] = []

        slots: list[_Client | None] = [None] * len(arg["specs"])

        default_port = arg.get("port", port)

        async def one(i: int, spec: dict[str, Any]) -> None:
            to = int(spec.get("port", default_port))
            request = _upgrade_request(host, to, spec["path"], spec.get("headers", {}))
            hello = spec.get("hello")
            client = _Client(request, hello.encode() if hello else None, stats)
            async with sem:
                try:
                    await loop.create_connection(lambda: client, host, to)
                    await asyncio.wait_for(client.upgraded, 60)
                    if arg.get("wait_first"):
                        await asyncio.wait_for(client.first_text, 60)
                except (OSError, ConnectionError, TimeoutError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    return
            slots[i] = client

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, spec) for i, spec in enumerate(arg["specs"])))
        # Keep the order of the specs: "send" addresses clients by index.
        clients.extend(c for c in slots if c is not None)
        return {
            "connected": len(clients),
            "failed": len(errors),
            "errors": errors[:3],
            "seconds": time.perf_counter() - t0,
        }

    async def reset(arg: Any) -> None:
        stats.texts = 0
        stats.latencies = []

    async def counts(arg: Any) -> dict[str, Any]:
        return {"texts": stats.texts, **percentiles_ms(stats.latencies), "closed": stats.closed}

    async def send(arg: dict[str, Any]) -> int:
        client = clients[arg["index"]]
        text: str = arg["text"]
        period = 1.0 / arg["rate"]
        end = loop.time() + arg["duration"]
        next_at = loop.time()
        sent = 0
        while loop.time() < end:
            client.send_text(text.replace("{ns}", str(time.perf_counter_ns())).encode())
            sent += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        return sent

    async def say(arg: dict[str, Any]) -> None:
        text: str = arg["text"]
        clients[arg["index"]].send_text(text.replace("{ns}", str(time.perf_counter_ns())).encode())

    async def alive(arg: Any) -> int:
        return sum(1 for c in clients if c.open)

    async def drop(arg: Any) -> int:
        gone = len(clients)
        for client in clients:
            if client.transport is not None:
                client.transport.close()
        clients.clear()
        return gone

    try:
        await ctl.serve(
            {
                "connect": connect,
                "reset": reset,
                "counts": counts,
                "send": send,
                "alive": alive,
                "drop": drop,
                "say": say,
            }
        )
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.close()
