"""Connections: authenticated WebSocket clients one lobby process holds, and RSS per connection.

The server's open-file limit is raised (``resource.setrlimit``) before it starts; clients come
from generator processes of at most ``PER_PROCESS`` raw-socket connections each. RSS is read
from /proc after a warm-up batch and again once every client is connected and has held for a
moment; the difference over the count is the memory per connection. The same clients against
a bare aiohttp WebSocket server give the baseline. Targets: all ``N`` held (10,000 in full
mode), <= 30 KB each. Connects per second shift with whatever else the machine runs; the
server's CPU time per connect (every thread of the process, the database's too) much less,
so both are reported. ``BENCH_PROFILE`` profiles each server over the connect window.
"""

from __future__ import annotations

import math
import time
from typing import Any

from bench._bare import ws_broadcast_child
from bench._common import LOOPS, make_result, row
from bench._lobby import lobby_skip_reason, start_lobby
from bench._proc import Child, raise_nofile
from bench._wsgen import ws_clients_child

__all__ = ["run", "measure_connections"]

TITLE = "connections: authenticated WebSockets, RSS each"
PER_PROCESS = 2500
WARM = 50
GEN_LOOP = "uvloop" if "uvloop" in LOOPS else "asyncio"


def measure_connections(
    server: Child, port: int, specs: list[dict[str, Any]], hold: float
) -> dict[str, Any]:
    """Connect ``specs[:WARM]``, read RSS, connect the rest, hold, read RSS again."""
    warm, rest = specs[:WARM], specs[WARM:]
    groups = max(1, math.ceil(len(rest) / PER_PROCESS))
    gens = [
        Child(
            ws_clients_child,
            "127.0.0.1",
            port,
            kind=GEN_LOOP,
            nofile=PER_PROCESS + 512,
            name=f"ws-{i}",
        )
        for i in range(groups + 1)
    ]
    try:
        for gen in gens:
            gen.recv(30)
        gens[0].call("connect", {"specs": warm, "concurrency": 50}, timeout=120)
        time.sleep(0.3)
        u0 = server.call("usage")
        server.profile()
        t0 = time.perf_counter()
        size = math.ceil(len(rest) / groups)
        for i, gen in enumerate(gens[1:]):
            chunk = rest[i * size : (i + 1) * size]
            gen.send("connect", {"specs": chunk, "concurrency": 200})
        connected = failed = 0
        errors: list[str] = []
        for gen in gens[1:]:
            res = gen.reply(timeout=600)
            connected += res["connected"]
            failed += res["failed"]
            errors += res["errors"]
        connect_s = time.perf_counter() - t0
        server.profile(f"connections-{server.name}")
        u_connected = server.call("usage")
        time.sleep(hold)
        u1 = server.call("usage")
        alive = sum(gen.call("alive", timeout=60) for gen in gens[1:])
    finally:
        for gen in gens:
            gen.close()
    return {
        "target": len(rest),
        "connected": connected,
        "failed": failed,
        "alive_after_hold": alive,
        "errors": errors[:3],
        "connect_s": connect_s,
        "connects_per_s": connected / connect_s if connect_s else math.nan,
        # all the server process's threads (the database's included), so a busy machine
        # slows the figure above but hardly this one
        "cpu_ms_per_connect": (u_connected["cpu"] - u0["cpu"]) * 1e3 / max(connected, 1),
        "rss_before_mb": u0["rss"] / 2**20,
        "rss_after_mb": u1["rss"] / 2**20,
        "kb_per_connection": (u1["rss"] - u0["rss"]) / 1024 / max(alive, 1),
    }


def _lobby_connections(kind: str, n: int, hold: float) -> dict[str, Any]:
    from bench._lobby_ws import lobby_ws_settings, lobby_ws_specs

    lobby, port = start_lobby(lobby_ws_settings(n), kind, nofile=n + 2048)
    try:
        specs = lobby_ws_specs(port, n + WARM, prefix="conn")
        return measure_connections(lobby, port, specs, hold)
    finally:
        lobby.close()


def run(quick: bool) -> dict[str, Any]:
    n = 200 if quick else 10_000
    hold = 1.0 if quick else 5.0
    limit = raise_nofile(n + 2048)
    skip = lobby_skip_reason()
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {"nofile_soft_limit": limit}
    notes = [
        f"{n} clients after a {WARM}-client warm-up, held {hold:g} s; RSS from /proc/<pid>/statm "
        f"of the server process; clients in processes of <= {PER_PROCESS}; CPU per connect: the "
        "server process's user+system time over the connect window (all its threads)."
    ]
    for kind in LOOPS:
        with Child(ws_broadcast_child, kind=kind, nofile=n + 2048, name="bare-ws") as bare:
            _, port = bare.recv(30)
            bare_fig = measure_connections(bare, port, [{"path": "/ws"}] * (n + WARM), hold)
        figures[kind] = {"bare": bare_fig}
        if skip is not None:
            rows.append(
                row(
                    loop=kind,
                    metric="bare aiohttp RSS/connection",
                    value=bare_fig["kb_per_connection"],
                    unit="KB",
                )
            )
            continue
        fig = _lobby_connections(kind, n, hold)
        figures[kind]["lobby"] = fig
        rows.append(
            row(
                loop=kind,
                metric="lobby connections held",
                value=float(fig["alive_after_hold"]),
                unit="",
                target=("value", ">=", float(n)),
            )
        )
        rows.append(
            row(
                loop=kind,
                metric="lobby RSS/connection",
                value=fig["kb_per_connection"],
                unit="KB",
                baseline=bare_fig["kb_per_connection"],
                baseline_name="bare aiohttp",
                target=("value", "<=", 30.0),
            )
        )
        rows.append(
            row(
                loop=kind,
                metric="lobby WS connects/s",
                value=fig["connects_per_s"],
                unit="/s",
                baseline=bare_fig["connects_per_s"],
                baseline_name="bare aiohttp",
            )
        )
        rows.append(
            row(
                loop=kind,
                metric="lobby server CPU per WS connect",
                value=fig["cpu_ms_per_connect"],
                unit="ms",
                baseline=bare_fig["cpu_ms_per_connect"],
                baseline_name="bare aiohttp",
            )
        )
        if fig["failed"]:
            notes.append(f"{kind}: {fig['failed']} failed, e.g. {fig['errors'][:1]}")
    return make_result("connections", TITLE, rows, figures=figures, notes=notes, skipped=skip)
