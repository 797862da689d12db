"""Reconnect storm through HAProxy: ``N`` clients of a killed lobby process back on the others.

Three lobby processes share a ``redis-server`` (its own, on a free port) and one SQLite file;
HAProxy (round robin, health checks on ``/api/status`` every 200 ms, ``option redispatch``)
stands in front of them. ``N`` sessions (``PER_ACCOUNT`` per account; the first has a
character) connect to the first process; it is killed with SIGKILL (no goodbye to anyone).
One generator process then reconnects all ``N`` clients at once through HAProxy, which sends
them to the two survivors (a connect to the dead one fails and is redispatched until the
health check takes it out). Each client sends a ``HEARTBEAT`` as soon as its upgrade is
answered and counts as *back* when the first frame comes back; then the first client sends
one ``CHAT`` that must reach all ``N`` (through Redis: they are on two processes).

Figures, from the kill: *all back* and *all back and chatting*. Bounded: one generator
process, ``N`` clients, every wait has a timeout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench._common import LOOPS, BenchError, make_result, row, skip_result
from bench._lobby import lobby_skip_reason
from bench._lobby_ws import lobby_ws_specs
from bench._proc import Child, raise_nofile
from bench._wsgen import ws_clients_child
from bench.fanout_cluster import PROCESSES, lobby_cluster
from bench.reconnect_storm import GEN_LOOP, TIMEOUT_S, back_and_chatting_rows, reconnect_and_chat

__all__ = ["run", "storm"]

TITLE = "reconnect storm through HAProxy: N clients of a killed lobby process back on the others"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _haproxy(work: Path, ports: list[int], maxconn: int) -> tuple[subprocess.Popen[bytes], int]:
    """HAProxy on a free port in front of ``ports``, once it forwards ``/api/status``."""
    port = _free_port()
    servers = "\n".join(f"    server l{i} 127.0.0.1:{p} check" for i, p in enumerate(ports))
    cfg = work / "haproxy.cfg"
    cfg.write_text(
        f"global\n    maxconn {maxconn}\n\n"
        "defaults\n    mode http\n    option redispatch\n    retries 3\n"
        "    timeout connect 2s\n    timeout client 120s\n    timeout server 120s\n"
        "    timeout tunnel 1h\n\n"
        f"frontend lobby\n    bind 127.0.0.1:{port}\n    maxconn {maxconn}\n"
        "    default_backend lobbies\n\n"
        "backend lobbies\n    balance roundrobin\n    option httpchk GET /api/status\n"
        "    http-check expect status 200\n    default-server inter 200ms fall 2 rise 1\n"
        f"{servers}\n"
    )
    proc = subprocess.Popen(
        ["haproxy", "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as r:  # noqa: S310
                if r.status == 200:
                    return proc, port
        except OSError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.05)
    proc.kill()
    proc.wait(10)
    raise BenchError("haproxy did not start")


def storm(kind: str, n: int) -> dict[str, Any]:
    """``n`` clients of a killed process back through HAProxy; seconds and counts."""
    prefix = "shards-bench-storm-cluster-"
    with lobby_cluster(n, kind, nofile=n + 2048, prefix=prefix) as (lobbies, ports, work):
        proxy, proxy_port = _haproxy(work, ports, maxconn=n + 512)  # 2 fds each
        try:
            with Child(
                ws_clients_child, "127.0.0.1", ports[0], kind=GEN_LOOP, nofile=n + 512, name="ws"
            ) as gen:
                gen.recv(30)
                specs = lobby_ws_specs(ports[0], n, prefix="victim")
                first = gen.call("connect", {"specs": specs, "concurrency": 200}, TIMEOUT_S)
                if first["connected"] != n:
                    raise BenchError(f"only {first['connected']} of {n} connected")
                t0 = time.perf_counter()
                os.kill(int(lobbies[0].pid or 0), signal.SIGKILL)
                lobbies[0].close()  # reaped: the port refuses (a real client retries a
                # reconnect that raced the dying process; the generator tries once)
                gen.call("drop")
                return reconnect_and_chat(gen, specs, proxy_port, t0)
        finally:
            proxy.send_signal(signal.SIGUSR1)
            try:
                proxy.wait(10)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait(10)


def run(quick: bool) -> dict[str, Any]:
    n = 200 if quick else 5000
    raise_nofile(2 * n + 4096)
    skip = lobby_skip_reason()
    for program in ("redis-server", "haproxy"):
        if skip is None and shutil.which(program) is None:
            skip = f"{program} is not installed (Debian package {program})"
    if skip is not None:
        return skip_result("reconnect_cluster", TITLE, skip)
    kind = LOOPS[-1]
    fig = storm(kind, n)
    rows = [
        row(loop=kind, metric=f"{n} clients back on 2 processes", value=fig["back_s"], unit="s"),
        *back_and_chatting_rows(kind, fig),
    ]
    notes = [
        f"{n} sessions on lobby process 1 of {PROCESSES} (one SQLite file, one redis-server); "
        "SIGKILL, then all reconnect at once through HAProxy (round robin, health check every "
        "200 ms, redispatch); 'back' = upgraded and a HEARTBEAT answered on every socket, "
        "'chatting' = one CHAT has then reached all of them; times from the kill."
    ]
    if fig["failed"]:
        notes.append(f"{fig['failed']} reconnects failed, e.g. {fig['errors'][:1]}")
    return make_result("reconnect_cluster", TITLE, rows, figures={kind: fig}, notes=notes)
