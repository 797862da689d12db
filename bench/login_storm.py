"""Login storm: p99 latency of ``GET /api/status`` during concurrent logins, vs idle.

The lobby runs with its production argon2id cost (RFC 9106 low-memory: t=3, 64 MiB, p=4) and
its default hashing pool, so each login is tens of milliseconds of hashing that must stay off
the event loop's CPU. A probe process asks ``/api/status`` every ``INTERVAL`` on one keep-alive
connection and times each answer (``perf_counter_ns`` in the probe). Idle windows (the lobby has
nothing else to do) alternate with storm windows (a generator process keeps ``CONCURRENCY``
logins in flight), ``WINDOWS`` of each; after each storm one more login, queued behind the
storm's, is waited for, so the next idle window starts with no hash left running. Each
storm/idle pair gives a p99 ratio, and the row reports the pair with the median ratio: on a
shared machine a burst of someone else's work lands in one window, not in the figure.
Target: storm p99 <= 3x idle p99. Logins per second are over all storm windows together.
"""

from __future__ import annotations

import json
import os
import statistics
import urllib.request
from typing import Any

from bench._common import LOOPS, latency_rows, make_result, row
from bench._httpgen import build_request, http_child
from bench._lobby import BENCH_LIMITS, PASSWORD, lobby_skip_reason, make_accounts, start_lobby
from bench._proc import Child

__all__ = ["run"]

TITLE = "login storm: /api/status p99 during logins"
INTERVAL = 0.01
CONCURRENCY = 8
WINDOWS = 5
GEN_LOOP = "uvloop" if "uvloop" in LOOPS else "asyncio"


def _tree_cpu_s(pid: int | None) -> float:
    """CPU seconds of process ``pid`` and its live children (the lobby and its hashing
    workers): getrusage would miss children that have not exited."""
    if pid is None:
        return 0.0
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                pids += [int(p) for p in fh.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _login(port: int, username: str) -> None:
    """One login, waited for (queued behind every hash already in the lobby)."""
    body = json.dumps({"username": username, "password": PASSWORD}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/auth/login",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback URL
        resp.read()


def _storm(kind: str, accounts: int, duration: float, windows: int) -> dict[str, Any]:
    lobby, port = start_lobby(dict(BENCH_LIMITS), kind)
    pairs: list[dict[str, Any]] = []
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
            _login(port, "storm0")  # and the hashing workers started
            lobby.profile()
            for _ in range(windows):
                idle = probe.call("probe", duration, timeout=duration + 60)
                cpu0, wall0 = _tree_cpu_s(lobby.pid), os.times().elapsed
                gen.send("run", duration + 0.5)
                storm = probe.call("probe", duration, timeout=duration + 60)
                load = gen.reply(timeout=duration + 120)
                _login(port, "storm0")
                cpu1, wall1 = _tree_cpu_s(lobby.pid), os.times().elapsed
                pairs.append(
                    {
                        "idle": idle,
                        "storm": storm,
                        "ratio": storm["p99_ms"] / idle["p99_ms"],
                        "logins": load["responses"],
                        "storm_s": load["responses"] / load["rate"] if load["rate"] else 0.0,
                        "login_statuses": load["statuses"],
                        "lobby_cpu_share": (cpu1 - cpu0) / (wall1 - wall0),
                    }
                )
            lobby.profile("login_storm-lobby")
    finally:
        lobby.close()
    median = sorted(pairs, key=lambda p: p["ratio"])[len(pairs) // 2]
    statuses: dict[str, int] = {}
    for pair in pairs:
        for code, n in pair["login_statuses"].items():
            statuses[str(code)] = statuses.get(str(code), 0) + n
    storm_s = sum(p["storm_s"] for p in pairs)
    return {
        "pairs": pairs,
        "median": median,
        "ratios": [round(p["ratio"], 2) for p in pairs],
        "logins_per_s": sum(p["logins"] for p in pairs) / storm_s if storm_s else 0.0,
        "login_statuses": statuses,
        "lobby_cpu_share": statistics.median(p["lobby_cpu_share"] for p in pairs),
    }


def run(quick: bool) -> dict[str, Any]:
    skip = lobby_skip_reason()
    title = TITLE
    if skip is not None:
        from bench._common import skip_result

        return skip_result("login_storm", title, skip)
    duration = 1.0 if quick else 4.0
    windows = 1 if quick else WINDOWS
    accounts = 2 if quick else 16
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    notes = [
        f"probe every {INTERVAL * 1000:g} ms; {windows} idle and {windows} storm windows of "
        f"{duration:g} s alternating, {CONCURRENCY} logins in flight over {accounts} accounts "
        "during a storm; the p99 rows are the pair with the median ratio; production argon2 "
        "cost and hashing pool; per-address limits raised (all load is from 127.0.0.1)."
    ]
    for kind in LOOPS:
        fig = _storm(kind, accounts, duration, windows)
        figures[kind] = fig
        median = fig["median"]
        rows += latency_rows(
            kind,
            "/api/status {q} in storm",
            median["storm"],
            median["idle"],
            "idle",
            targets={"p99": ("ratio", "<=", 3.0)},
        )
        rows.append(
            row(loop=kind, metric="logins during storm", value=fig["logins_per_s"], unit="/s")
        )
        notes.append(
            f"{kind}: p99 ratio of each storm/idle pair {fig['ratios']}; lobby and hashing "
            f"workers used {fig['lobby_cpu_share']:.2f} cores during a storm (median)"
        )
        bad = {k: v for k, v in fig["login_statuses"].items() if int(k) != 200}
        if bad:
            notes.append(f"{kind}: login answers other than 200: {bad}")
    return make_result("login_storm", title, rows, figures=figures, notes=notes)
