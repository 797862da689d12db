"""Lobby fan-out over 3 processes on one Redis vs 1 process: server CPU per chat recipient.

The same ``N`` WebSocket clients and chat rate as ``bench.fanout``, measured twice in one run:
against one lobby process, then spread evenly over three lobby processes sharing a
``redis-server`` (its own, on a free port) and one SQLite file. Client 0 (on the first process)
sends; the CPU is the sum over the lobby processes (getrusage) divided by the messages the
clients received, so the ratio is what the broker (publish once, each process decodes and
delivers to its own clients) costs per recipient. Redis' own CPU is not counted. Target: the
3-process figure <= 1.5x the 1-process one.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._common import LOOPS, make_result, row
from bench._lobby import lobby_skip_reason, start_lobby
from bench._lobby_ws import chat_text, lobby_ws_settings, lobby_ws_specs
from bench._proc import Child
from bench._wsgen import ws_clients_child

__all__ = ["PROCESSES", "lobby_cluster", "run"]

TITLE = "lobby fan-out over 3 processes (Redis) vs 1: server CPU per chat recipient"
PROCESSES = 3


def _redis() -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server without persistence on a free 127.0.0.1 port, once it is ready."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 30
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"Ready to accept connections" not in seen:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"redis-server did not start: {seen[-300:]!r}")
            if sel.select(1.0):
                seen += os.read(proc.stdout.fileno(), 65536)
    return proc, port


@contextlib.contextmanager
def lobby_cluster(
    n: int, kind: str, *, nofile: int, prefix: str
) -> Iterator[tuple[list[Child], list[int], Path]]:
    """``PROCESSES`` lobbies for ``n`` clients on loop ``kind``, sharing their own
    redis-server and one SQLite file in a temporary directory.

    Yields the lobby children, their ports (same order) and that directory; on exit every
    lobby is closed (closing one early is fine) and redis-server stopped.
    """
    redis, redis_port = _redis()
    lobbies: list[Child] = []
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            work = Path(tmp)
            settings = {
                **lobby_ws_settings(n),
                "redis_url": f"redis://127.0.0.1:{redis_port}/0",
                "database_url": f"sqlite:///{work / 'shared.sqlite3'}",
                "ticket_key_file": str(work / "ticket.pem"),
            }
            ports = []
            for _ in range(PROCESSES):  # one after the other: the first creates the schema
                child, port = start_lobby(settings, kind, nofile=nofile)
                lobbies.append(child)
                ports.append(port)
            yield lobbies, ports, work
    finally:
        for child in lobbies:
            child.close()
        redis.terminate()
        redis.wait(10)
        if redis.stdout is not None:
            redis.stdout.close()


def _measure(
    servers: list[Child], specs: list[dict[str, Any]], *, rate: float, duration: float, kind: str
) -> dict[str, Any]:
    """Connect ``specs`` (client 0 sends), broadcast for ``duration``; summed CPU/recipient."""
    with Child(ws_clients_child, "127.0.0.1", 0, kind=kind, nofile=len(specs) + 256) as clients:
        clients.recv(30)
        conn = clients.call("connect", {"specs": specs, "concurrency": 100}, timeout=300)
        if conn["failed"]:
            raise RuntimeError(f"{conn['failed']} clients failed to connect: {conn['errors']}")
        text = chat_text()
        clients.call("send", {"index": 0, "text": text, "rate": rate, "duration": 0.3}, 60)
        time.sleep(0.3)  # let the warm-up messages drain before counting
        clients.call("reset")
        before = [s.call("usage") for s in servers]
        sent = clients.call(
            "send", {"index": 0, "text": text, "rate": rate, "duration": duration}, duration + 60
        )
        time.sleep(0.3)
        after = [s.call("usage") for s in servers]
        counts = clients.call("counts")
    cpu = sum(a["cpu"] - b["cpu"] for a, b in zip(after, before, strict=True))
    delivered = counts["n"]
    return {
        "processes": len(servers),
        "recipients": len(specs),
        "sent": sent,
        "delivered": delivered,
        "delivery_ratio": delivered / (sent * len(specs)) if sent else float("nan"),
        "cpu_s": cpu,
        "cpu_per_recipient_us": cpu / delivered * 1e6 if delivered else float("nan"),
        "p99_ms": counts["p99_ms"],
    }


def _one(kind: str, n: int, rate: float, duration: float) -> dict[str, Any]:
    lobby, port = start_lobby(lobby_ws_settings(n), kind, nofile=n + 512)
    try:
        specs = [{**spec, "port": port} for spec in lobby_ws_specs(port, n, prefix="one")]
        return _measure([lobby], specs, rate=rate, duration=duration, kind=kind)
    finally:
        lobby.close()


def _three(kind: str, n: int, rate: float, duration: float) -> dict[str, Any]:
    with lobby_cluster(n, kind, nofile=n + 512, prefix="shards-bench-cluster-") as (
        lobbies,
        ports,
        _,
    ):
        specs = lobby_ws_specs(ports[0], n, prefix="three")
        for i, spec in enumerate(specs):
            spec["port"] = ports[i % PROCESSES]
        return _measure(lobbies, specs, rate=rate, duration=duration, kind=kind)


def run(quick: bool) -> dict[str, Any]:
    n = 90 if quick else 1000
    rate = 10.0
    duration = 1.0 if quick else 10.0
    skip = lobby_skip_reason()
    if skip is None and shutil.which("redis-server") is None:
        skip = "redis-server is not installed (Debian package redis-server)"
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    notes = [
        f"{n} WebSocket clients, one sends {rate:g} chat messages/s for {duration:g} s; "
        f"CPU = lobby processes' getrusage summed / messages delivered; {PROCESSES} processes "
        "share a redis-server (its CPU not counted) and one SQLite file."
    ]
    if skip is None:
        kind = LOOPS[-1]
        one = _one(kind, n, rate, duration)
        three = _three(kind, n, rate, duration)
        figures[kind] = {"one": one, "three": three}
        # judged at 1,000 clients: with the quick run's few, fixed per-message costs
        # (one Redis publish, one decode per process) are most of the CPU figure
        cpu_target: tuple[str, str, float] | None = None if quick else ("ratio", "<=", 1.5)
        for metric, key, unit, target in (
            ("CPU/recipient", "cpu_per_recipient_us", "us", cpu_target),
            ("broadcast p99", "p99_ms", "ms", None),
        ):
            rows.append(
                row(
                    loop=kind,
                    metric=f"{PROCESSES}-process {metric}",
                    value=three[key],
                    unit=unit,
                    baseline=one[key],
                    baseline_name="1 process",
                    target=target,
                )
            )
        for name, fig in (("1 process", one), (f"{PROCESSES} processes", three)):
            if fig["delivery_ratio"] < 0.99:
                notes.append(f"{name}: delivered {fig['delivery_ratio']:.3f} of messages")
    return make_result("fanout_cluster", TITLE, rows, figures=figures, notes=notes, skipped=skip)
