"""Login storm: p99 latency of ``GET /api/status`` during concurrent logins, vs idle.

The lobby runs with its production argon2id cost (RFC 9106 low-memory: t=3, 64 MiB, p=4), so
each login is tens of milliseconds of hashing that must stay off the event loop. A probe process
asks ``/api/status`` every ``INTERVAL`` on one keep-alive connection and times each answer
(``perf_counter_ns`` in the probe); first with the lobby idle, then while a generator process
keeps ``CONCURRENCY`` logins in flight. Target: storm p99 <= 3x idle p99.
"""

from __future__ import annotations

import json
from typing import Any

from bench._common import LOOPS, make_result, row
from bench._httpgen import build_request, http_child
from bench._lobby import BENCH_LIMITS, PASSWORD, lobby_skip_reason, make_accounts, start_lobby
from bench._proc import Child

__all__ = ["run"]

TITLE = "login storm: /api/status p99 during logins"
INTERVAL = 0.01
CONCURRENCY = 8
GEN_LOOP = "uvloop" if "uvloop" in LOOPS else "asyncio"


def _storm(
    kind: str, accounts: int, duration: float, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    lobby, port = start_lobby({**BENCH_LIMITS, **(extra or {})}, kind)
    try:
        make_accounts(port, accounts, prefix="storm")
        probe_opts = {
            "host": "127.0.0.1",
            "port": port,
            "requests": [build_request("GET", "/api/status", "127.0.0.1", port)],
            "interval": INTERVAL,
        }
        logins = [
            build_request(
                "POST",
                "/api/auth/login",
                "127.0.0.1",
                port,
                {"Content-Type": "application/json"},
                json.dumps({"username": f"storm{i}", "password": PASSWORD}).encode(),
            )
            for i in range(accounts)
        ]
        storm_opts = {
            "host": "127.0.0.1",
            "port": port,
            "requests": logins,
            "connections": CONCURRENCY,
            "depth": 1,
        }
        with (
            Child(http_child, probe_opts, kind=GEN_LOOP, name="probe") as probe,
            Child(http_child, storm_opts, kind=GEN_LOOP, name="logins") as gen,
        ):
            probe.recv(30)
            gen.recv(30)
            probe.call("probe", 0.3, timeout=60)  # warm-up
            idle = probe.call("probe", duration, timeout=duration + 60)
            lobby.profile()
            u0 = lobby.call("usage")
            gen.send("run", duration + 0.5)
            storm = probe.call("probe", duration, timeout=duration + 60)
            load = gen.reply(timeout=duration + 120)
            u1 = lobby.call("usage")
            lobby.profile("login_storm-lobby")
    finally:
        lobby.close()
    return {
        "idle": idle,
        "storm": storm,
        "logins_per_s": load["rate"],
        "login_statuses": load["statuses"],
        "server_cpu_share": (u1["cpu"] - u0["cpu"]) / (u1["wall"] - u0["wall"]),
    }


def run(quick: bool) -> dict[str, Any]:
    skip = lobby_skip_reason()
    title = TITLE
    if skip is not None:
        from bench._common import skip_result

        return skip_result("login_storm", title, skip)
    duration = 1.0 if quick else 10.0
    accounts = 2 if quick else 16
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    notes = [
        f"probe every {INTERVAL * 1000:g} ms for {duration:g} s, idle then with {CONCURRENCY} "
        f"logins in flight over {accounts} accounts; production argon2 cost; per-address limits "
        "raised (all load is from 127.0.0.1)."
    ]
    for kind in LOOPS:
        fig = _storm(kind, accounts, duration)
        figures[kind] = fig
        rows.append(
            row(
                loop=kind,
                metric="/api/status p99 in storm",
                value=fig["storm"]["p99_ms"],
                unit="ms",
                baseline=fig["idle"]["p99_ms"],
                baseline_name="idle",
                target=("ratio", "<=", 3.0),
            )
        )
        rows.append(
            row(
                loop=kind,
                metric="/api/status p50 in storm",
                value=fig["storm"]["p50_ms"],
                unit="ms",
                baseline=fig["idle"]["p50_ms"],
                baseline_name="idle",
            )
        )
        rows.append(
            row(loop=kind, metric="logins during storm", value=fig["logins_per_s"], unit="/s")
        )
        bad = {k: v for k, v in fig["login_statuses"].items() if int(k) != 200}
        if bad:
            notes.append(f"{kind}: login answers other than 200: {bad}")
    return make_result("login_storm", title, rows, figures=figures, notes=notes)
