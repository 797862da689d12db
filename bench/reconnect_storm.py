"""Reconnect storm: a lobby restarts under N connected clients, and all of them come back at once.

``N`` sessions (logged in over REST, ``PER_ACCOUNT`` per account; the first one has a
character) connect to a lobby whose database lives in a directory kept for the run. The lobby
is stopped (it closes every socket with 1001) and started again on the same database: the
sessions are still valid rows, but the new process has no presence and nothing cached. One
generator process then reconnects all ``N`` clients at once (no concurrency cap below ``N``).
Each client sends a ``HEARTBEAT`` as soon as its upgrade is answered and counts as *back* when
the first frame comes back; once all are back, the first client sends one ``CHAT``, which
the lobby delivers to every connection. The lobby runs with a one-second
``session_touch_interval`` and is restarted more than a second after the sessions were last
used, so every reconnect is due to slide its session, as after a real outage longer than the
default 30 s.

Figures, measured from the moment the restarted lobby listens: *all back* (every upgrade
answered and one message round trip on every socket) and *all back and chatting* (the chat
has reached all ``N``). Every client sending a global ``CHAT`` would be N² deliveries, a
fan-out test rather than a connect test, so one chat reaching everyone stands for "chatting".
The same ``N`` raw clients connecting at once to a bare aiohttp WebSocket server (the
upgrade only) give the baseline. Bounded: one generator process, ``N`` clients, every wait
has a timeout.
"""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

from bench._bare import ws_broadcast_child
from bench._common import LOOPS, BenchError, make_result, row, skip_result
from bench._lobby import lobby_skip_reason, start_lobby
from bench._lobby_ws import chat_text, lobby_ws_settings, lobby_ws_specs
from bench._proc import Child, raise_nofile
from bench._wsgen import ws_clients_child

__all__ = ["back_and_chatting_rows", "reconnect_and_chat", "run", "storm"]

TITLE = "reconnect storm: N clients back and chatting after a lobby restart"
GEN_LOOP = "uvloop" if "uvloop" in LOOPS else "asyncio"
HEARTBEAT = '{"type":"heartbeat"}'
TOUCH_S = 1.0
TIMEOUT_S = 300.0


def _wait_chat(gen: Child, n: int, timeout: float) -> None:
    """Until ``n`` stamped chat frames have arrived at the generator's clients."""
    deadline = time.monotonic() + timeout
    while True:
        got = int(gen.call("counts")["n"])
        if got >= n:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"the chat reached {got} of {n} clients within {timeout:g} s")
        time.sleep(0.01)


def reconnect_and_chat(
    gen: Child, specs: list[dict[str, Any]], port: int, t0: float
) -> dict[str, Any]:
    """Reconnect every client of ``specs`` to ``port`` at once, then chat to all of them.

    Each client sends a ``HEARTBEAT`` once its upgrade is answered and is *back* at the first
    frame; then the first client says one line that must reach every client back. Returns
    the counts (back, failed, errors) and the seconds from ``t0`` to all back and to all
    chatting.
    """
    back = gen.call(
        "connect",
        {
            "specs": [{**spec, "hello": HEARTBEAT} for spec in specs],
            "concurrency": len(specs),
            "wait_first": True,
            "port": port,
        },
        timeout=TIMEOUT_S,
    )
    back_s = time.perf_counter() - t0
    gen.call("reset")
    gen.call("say", {"index": 0, "text": chat_text()})
    _wait_chat(gen, back["connected"], TIMEOUT_S)
    return {
        "n": len(specs),
        "back": back["connected"],
        "failed": back["failed"],
        "errors": back["errors"],
        "back_s": back_s,
        "chatting_s": time.perf_counter() - t0,
    }


def back_and_chatting_rows(kind: str, fig: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows every storm reports from :func:`reconnect_and_chat`'s result: how many came
    back (all ``n`` is the target) and the seconds until all were back and chatting."""
    n = fig["n"]
    return [
        row(
            loop=kind,
            metric="clients back (of N)",
            value=float(fig["back"]),
            unit="",
            target=("value", ">=", float(n)),
        ),
        row(loop=kind, metric=f"{n} clients back and chatting", value=fig["chatting_s"], unit="s"),
    ]


def storm(kind: str, n: int) -> dict[str, Any]:
    """One storm of ``n`` clients against a lobby on loop ``kind``; seconds and counts."""
    settings = {**lobby_ws_settings(n), "session_touch_interval": TOUCH_S}
    with tempfile.TemporaryDirectory(prefix="shards-storm-") as data_dir:
        lobby, port = start_lobby(settings, kind, nofile=n + 2048, data_dir=data_dir)
        gen = Child(ws_clients_child, "127.0.0.1", port, kind=GEN_LOOP, nofile=n + 512, name="ws")
        try:
            specs = lobby_ws_specs(port, n, prefix="storm")
            gen.recv(30)
            first = gen.call("connect", {"specs": specs, "concurrency": 200}, timeout=TIMEOUT_S)
            if first["connected"] != n:
                raise BenchError(f"only {first['connected']} of {n} connected: {first['errors']}")
            used = time.monotonic()
            lobby.close()  # MasterServer.stop(): every socket closed with 1001
            gen.call("drop")
            time.sleep(max(0.0, used + TOUCH_S - time.monotonic()))
            lobby, port = start_lobby(settings, kind, nofile=n + 2048, data_dir=data_dir)
            lobby.profile()
            t0 = time.perf_counter()
            result = reconnect_and_chat(gen, specs, port, t0)
            lobby.profile(f"reconnect_storm-{kind}")
        finally:
            gen.close()
            lobby.close()
    back, back_s = result["back"], result["back_s"]
    return {**result, "connects_per_s": back / back_s if back_s else math.nan}


def bare_storm(kind: str, n: int) -> dict[str, Any]:
    """``n`` raw clients upgrading at once on a bare aiohttp WebSocket server."""
    with Child(ws_broadcast_child, kind=kind, nofile=n + 2048, name="bare-ws") as bare:
        _, port = bare.recv(30)
        with Child(
            ws_clients_child, "127.0.0.1", port, kind=GEN_LOOP, nofile=n + 512, name="ws"
        ) as gen:
            gen.recv(30)
            t0 = time.perf_counter()
            res = gen.call(
                "connect", {"specs": [{"path": "/ws"}] * n, "concurrency": n}, timeout=TIMEOUT_S
            )
            seconds = time.perf_counter() - t0
    return {"back": res["connected"], "failed": res["failed"], "back_s": seconds}


def run(quick: bool) -> dict[str, Any]:
    n = 200 if quick else 5000
    raise_nofile(n + 2048)
    skip = lobby_skip_reason()
    if skip is not None:
        return skip_result("reconnect_storm", TITLE, skip)
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    notes = [
        f"{n} sessions, one generator process, reconnecting at once after a lobby restart on "
        "the same database; 'back' = upgraded and a HEARTBEAT answered on every socket, "
        "'chatting' = one CHAT has then reached all of them; baseline: the same clients "
        "upgrading at once on a bare aiohttp WebSocket server."
    ]
    for kind in LOOPS:
        bare = bare_storm(kind, n)
        fig = storm(kind, n)
        figures[kind] = {"bare": bare, "lobby": fig}
        rows.append(
            row(
                loop=kind,
                metric=f"{n} clients back after a restart",
                value=fig["back_s"],
                unit="s",
                baseline=bare["back_s"],
                baseline_name="bare aiohttp upgrades",
            )
        )
        rows += back_and_chatting_rows(kind, fig)
        if fig["failed"] or bare["failed"]:
            notes.append(
                f"{kind}: {fig['failed']} lobby and {bare['failed']} bare reconnects failed, "
                f"e.g. {fig['errors'][:1]}"
            )
    return make_result("reconnect_storm", TITLE, rows, figures=figures, notes=notes)
