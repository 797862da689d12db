"""Lobby fan-out: server CPU per recipient of a chat broadcast, vs a bare aiohttp WS broadcast.

``N`` WebSocket clients (raw sockets, ``bench._wsgen``, their own process) hold connections;
one of them sends ``RATE`` chat messages a second, each stamped with its send time. The server
process's CPU (getrusage) over the window divided by the stamped messages the clients received
is the CPU per recipient; the stamps also give the delivery latency. Target: lobby <= 1.5x the
bare server.
"""

from __future__ import annotations

import time
from typing import Any

from bench._bare import ws_broadcast_child
from bench._common import LOOPS, make_result, row
from bench._lobby import lobby_skip_reason, start_lobby
from bench._proc import Child
from bench._wsgen import STAMP_FORMAT, ws_clients_child

__all__ = ["run", "measure_fanout"]

TITLE = "lobby fan-out: server CPU per chat recipient"
GEN_LOOP = "uvloop" if "uvloop" in LOOPS else "asyncio"


def measure_fanout(
    server: Child,
    port: int,
    specs: list[dict[str, Any]],
    text: str,
    *,
    rate: float,
    duration: float,
) -> dict[str, Any]:
    """Connect ``specs`` (client 0 sends), broadcast for ``duration``; CPU per recipient."""
    with Child(
        ws_clients_child, "127.0.0.1", port, kind=GEN_LOOP, nofile=len(specs) + 256, name="ws"
    ) as clients:
        clients.recv(30)
        conn = clients.call("connect", {"specs": specs, "concurrency": 100}, timeout=300)
        if conn["failed"]:
            raise RuntimeError(f"{conn['failed']} clients failed to connect: {conn['errors']}")
        clients.call("send", {"index": 0, "text": text, "rate": rate, "duration": 0.3}, 60)
        time.sleep(0.3)
        clients.call("reset")
        server.profile()
        u0 = server.call("usage")
        sent = clients.call(
            "send", {"index": 0, "text": text, "rate": rate, "duration": duration}, duration + 60
        )
        time.sleep(0.3)
        u1 = server.call("usage")
        server.profile(f"fanout-{server.name}")
        counts = clients.call("counts")
    delivered = counts["n"]
    cpu = u1["cpu"] - u0["cpu"]
    return {
        "recipients": len(specs),
        "sent": sent,
        "delivered": delivered,
        "delivery_ratio": delivered / (sent * len(specs)) if sent else float("nan"),
        "cpu_s": cpu,
        "cpu_share": cpu / (u1["wall"] - u0["wall"]),
        "cpu_per_recipient_us": cpu / delivered * 1e6 if delivered else float("nan"),
        "p50_ms": counts["p50_ms"],
        "p99_ms": counts["p99_ms"],
    }


def _lobby_fanout(kind: str, n: int, rate: float, duration: float) -> dict[str, Any]:
    from bench._lobby_ws import chat_text, lobby_ws_settings, lobby_ws_specs

    lobby, port = start_lobby(lobby_ws_settings(n), kind, nofile=n + 512)
    try:
        specs = lobby_ws_specs(port, n, prefix="fan")
        return measure_fanout(lobby, port, specs, chat_text(), rate=rate, duration=duration)
    finally:
        lobby.close()


def run(quick: bool) -> dict[str, Any]:
    n = 100 if quick else 1000
    rate = 10.0
    duration = 1.0 if quick else 10.0
    skip = lobby_skip_reason()
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    text = '{"type":"chat","content":"hello everyone ' + STAMP_FORMAT.format("{ns}") + '"}'
    notes = [
        f"{n} WebSocket clients, one sends {rate:g} chat messages/s for {duration:g} s; "
        "CPU = server process getrusage over the window / messages delivered; lobby chat and "
        "message rate limits raised for the sender."
    ]
    for kind in LOOPS:
        with Child(ws_broadcast_child, kind=kind, nofile=n + 512, name="bare-ws") as bare:
            _, port = bare.recv(30)
            specs = [{"path": "/ws"} for _ in range(n)]
            bare_fig = measure_fanout(bare, port, specs, text, rate=rate, duration=duration)
        figures[kind] = {"bare": bare_fig}
        if skip is not None:
            rows.append(
                row(
                    loop=kind,
                    metric="bare aiohttp CPU/recipient",
                    value=bare_fig["cpu_per_recipient_us"],
                    unit="us",
                )
            )
            continue
        lobby_fig = _lobby_fanout(kind, n, rate, duration)
        figures[kind]["lobby"] = lobby_fig
        rows.append(
            row(
                loop=kind,
                metric="lobby CPU/recipient",
                value=lobby_fig["cpu_per_recipient_us"],
                unit="us",
                baseline=bare_fig["cpu_per_recipient_us"],
                baseline_name="bare aiohttp",
                target=("ratio", "<=", 1.5),
            )
        )
        rows.append(
            row(
                loop=kind,
                metric="lobby broadcast p99",
                value=lobby_fig["p99_ms"],
                unit="ms",
                baseline=bare_fig["p99_ms"],
                baseline_name="bare aiohttp",
            )
        )
        if lobby_fig["delivery_ratio"] < 0.99:
            notes.append(f"{kind}: lobby delivered {lobby_fig['delivery_ratio']:.3f} of messages")
    return make_result("fanout", TITLE, rows, figures=figures, notes=notes, skipped=skip)
