"""Handshake flood: how long an honest peer takes to connect while garbage QUIC Initials arrive.

A victim ``PeerNode`` runs in one child process; a dialler child opens a fresh ``PeerNode``
(new identity, new ticket) for each attempt, times ``connect`` to the victim until the peer
handshake is done, and closes it. The idle attempts are the baseline; the same attempts then
run while a flood child sends ``RATE`` garbage Initials a second (1,200 bytes each, a fresh
destination connection id each, from one unconnected UDP socket) at the victim. Target (the
hardening goal): every connect under the flood within 2 s. The victim's admission counters
(``mesh.gate``) are in the figures.

:func:`garbage_initial` and :class:`InitialFlood` are also the flood of the mesh's tests.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import struct
import threading
import time
from typing import Any

from bench._common import LOOPS, make_result, percentile, row, skip_result
from bench._proc import Child

__all__ = ["InitialFlood", "garbage_initial", "run"]

TITLE = "handshake flood: honest connect time, idle vs 1,000 garbage Initials/s"
RATE = 1000.0
TARGET_S = 2.0
QUIC_V1 = 0x00000001


def garbage_initial(
    dcid: bytes, scid: bytes, *, size: int = 1200, version: int = QUIC_V1, token: bytes = b""
) -> bytes:
    """A long-header QUIC Initial of ``size`` bytes whose header parses and whose payload is
    random: what anyone can send without a key, and what a server must look at first."""
    first = 0xC0 | (os.urandom(1)[0] & 0x0F)  # long header, fixed bit, Initial, any pn bits
    head = b"".join(
        (
            bytes((first,)),
            struct.pack("!I", version),
            bytes((len(dcid),)),
            dcid,
            bytes((len(scid),)),
            scid,
            bytes((len(token),)),  # a 1-byte varint: tokens under 64 bytes
            token,
        )
    )
    rest = max(size - len(head) - 2, 20)
    return head + struct.pack("!H", 0x4000 | rest) + os.urandom(rest)


class InitialFlood(threading.Thread):
    """Sends ``rate`` garbage Initials a second to ``target`` from one unconnected UDP socket,
    for at most ``duration`` seconds (or until :meth:`stop`). Each has fresh connection ids.

    Bounded in time and count (``rate * duration``); :meth:`wait_sent` blocks until ``n``
    were sent (False on timeout or once the flood is over).
    """

    BATCH_INTERVAL = 0.005

    def __init__(self, target: tuple[str, int], *, rate: float, duration: float) -> None:
        super().__init__(name="initial-flood", daemon=True)
        self.target = target
        self.rate = rate
        self.duration = duration
        self.limit = int(rate * duration)
        self.sent = 0
        self.errors = 0
        self.elapsed = 0.0
        self._halt = threading.Event()
        self._progress = threading.Condition()

    def stop(self) -> None:
        """End the flood (returns at once; :meth:`join` to wait)."""
        self._halt.set()
        with self._progress:
            self._progress.notify_all()

    def wait_sent(self, n: int, timeout: float) -> bool:
        """Block until ``n`` Initials were sent; False on timeout or when the flood ended first."""
        with self._progress:
            return self._progress.wait_for(
                lambda: self.sent >= n or self._halt.is_set() or not self.is_alive(), timeout
            ) and (self.sent >= n)

    def run(self) -> None:
        # pre-built payload: a fresh header per datagram, the random tail shared
        template = garbage_initial(b"\0" * 8, b"\0" * 8)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        start = time.perf_counter()
        try:
            while not self._halt.is_set():
                elapsed = time.perf_counter() - start
                due = min(self.limit, int(elapsed * self.rate) + 1)
                if elapsed >= self.duration or self.sent >= self.limit:
                    break
                while self.sent < due:
                    ids = os.urandom(16)
                    data = template[:6] + ids[:8] + b"\x08" + ids[8:] + template[23:]
                    try:
                        sock.sendto(data, self.target)
                    except OSError:  # a full socket buffer: the datagram is lost, as on a link
                        self.errors += 1
                    with self._progress:
                        self.sent += 1
                        self._progress.notify_all()
                self._halt.wait(self.BATCH_INTERVAL)
        finally:
            self.elapsed = time.perf_counter() - start
            sock.close()
            self._halt.set()
            with self._progress:
                self._progress.notify_all()


# the benchmark ---------------------------------------------------------------------------


async def victim_child(ctl: Any, lobby_key: bytes) -> None:
    """Child body: the victim node; "stats" returns its counters."""
    from bench._mesh import make_node

    node = await make_node(lobby_key, 1, "Victim")
    ctl.send(("ready", (node.address, node.bench_ticket)))

    async def stats(_: Any) -> dict[str, int]:
        return dict(node.stats)

    try:
        await ctl.serve({"stats": stats})
    finally:
        await node.close()


async def dialler_child(ctl: Any, lobby_key: bytes, victim: tuple[str, int], ticket: str) -> None:
    """Child body: "dial" {count, first_id, gap}: that many fresh nodes connect, one at a time,
    ``gap`` seconds apart; returns each connect time in seconds (NaN for a failure) and the
    errors."""
    from bench._mesh import make_node

    ctl.send(("ready", None))

    async def dial(arg: dict[str, Any]) -> dict[str, Any]:
        times: list[float] = []
        errors: list[str] = []
        for i in range(arg["count"]):
            if i:
                await asyncio.sleep(arg.get("gap", 0.0))
            cid = arg["first_id"] + i
            node = await make_node(lobby_key, cid, f"Honest{cid}")
            try:
                t0 = time.perf_counter()
                try:
                    await asyncio.wait_for(node.connect(ticket, victim), 15.0)
                    times.append(time.perf_counter() - t0)
                except Exception as exc:
                    times.append(math.nan)
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
            finally:
                await node.close()
        return {"times": times, "errors": errors[:5]}

    await ctl.serve({"dial": dial})


async def flood_child(ctl: Any, target: tuple[str, int], rate: float, duration: float) -> None:
    """Child body: "start" starts an :class:`InitialFlood`, "halt" ends it and reports."""
    flood: InitialFlood | None = None
    ctl.send(("ready", None))

    async def start(_: Any) -> None:
        nonlocal flood
        flood = InitialFlood(target, rate=rate, duration=duration)
        flood.start()
        await asyncio.to_thread(flood.wait_sent, int(rate), 10.0)  # a second of flood first

    async def halt(_: Any) -> dict[str, float]:
        if flood is None:
            return {}
        flood.stop()
        await asyncio.to_thread(flood.join, 10.0)
        return {"sent": flood.sent, "errors": flood.errors, "seconds": flood.elapsed}

    try:
        await ctl.serve({"start": start, "halt": halt})
    finally:
        if flood is not None:
            flood.stop()


def _summary(times: list[float]) -> dict[str, float]:
    ok = [t for t in times if not math.isnan(t)]
    return {
        "attempts": len(times),
        "connected": len(ok),
        "p50_s": percentile(ok, 50),
        "max_s": max(ok) if len(ok) == len(times) and ok else math.nan,
    }


def _measure(kind: str, attempts: int, gap: float, flood_seconds: float) -> dict[str, Any]:
    from bench._mesh import lobby_key_bytes

    lobby_key = lobby_key_bytes()
    with Child(victim_child, lobby_key, kind=kind, name="flood-victim") as victim:
        address, ticket = victim.recv(30)[1]
        address = tuple(address)
        with Child(dialler_child, lobby_key, address, ticket, kind=kind, name="flood-dialler") as d:
            d.recv(30)
            d.call("dial", {"count": 1, "first_id": 99}, timeout=60)  # warm-up, not counted
            idle = d.call("dial", {"count": attempts, "first_id": 100}, timeout=120)
            before = victim.call("stats")
            with Child(flood_child, address, RATE, flood_seconds, name="flood") as flood:
                flood.recv(30)
                flood.call("start", timeout=30)
                u0 = victim.call("usage")
                loaded = d.call(
                    "dial", {"count": attempts, "first_id": 200, "gap": gap}, timeout=120
                )
                u1 = victim.call("usage")
                sent = flood.call("halt", timeout=30)
            after = victim.call("stats")
    gate = {k: after[k] - before.get(k, 0) for k in after if k.startswith("gate_")}
    return {
        "idle": {**_summary(idle["times"]), "errors": idle["errors"]},
        "flood": {**_summary(loaded["times"]), "errors": loaded["errors"]},
        "flood_sent": sent,
        "victim_cores": (u1["cpu"] - u0["cpu"]) / max(u1["wall"] - u0["wall"], 1e-9),
        "victim_gate": gate,
    }


def run(quick: bool) -> dict[str, Any]:
    try:
        from bench._mesh import product_skip_reason
    except ImportError as exc:  # pragma: no cover - bench._mesh is ours; guards a bad merge
        return skip_result("handshake_flood", TITLE, f"bench._mesh: {exc}")
    skip = product_skip_reason()
    if skip is not None:
        return skip_result("handshake_flood", TITLE, skip)
    attempts = 3 if quick else 20
    # full mode spreads the connects over more than a dial_timeout (5 s): garbage admitted
    # before the node came under pressure times out meanwhile and the next wave comes in
    gap = 0.0 if quick else 0.4
    flood_seconds = 15.0 if quick else 60.0  # an upper bound: stopped once the dials are done
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    notes = [
        f"{attempts} connects idle, then {attempts} ({gap:g} s apart) while one process sends "
        f"{RATE:g} garbage Initials/s (1,200 bytes, fresh connection ids) from one UDP socket, "
        "the first second before the first connect; a connect is "
        "PeerNode.connect of a fresh node until the peer handshake is done (after one warm-up "
        "connect); max is NaN when one failed.",
    ]
    for kind in LOOPS:
        m = _measure(kind, attempts, gap, flood_seconds)
        figures[kind] = m
        idle, flood = m["idle"], m["flood"]
        sent = m["flood_sent"]
        rate = sent.get("sent", 0) / sent["seconds"] if sent.get("seconds") else math.nan
        rows.append(
            row(
                loop=kind,
                metric="honest connect p50, flood",
                value=flood["p50_s"] * 1000,
                unit="ms",
                baseline=idle["p50_s"] * 1000,
                baseline_name="idle",
            )
        )
        rows.append(
            row(
                loop=kind,
                metric=f"honest connect max of {attempts}, flood",
                value=flood["max_s"] * 1000,
                unit="ms",
                baseline=idle["max_s"] * 1000,
                baseline_name="idle",
                target=("value", "<=", TARGET_S * 1000),
            )
        )
        rows.append(row(loop=kind, metric="flood rate achieved", value=rate, unit="Initials/s"))
        rows.append(
            row(
                loop=kind,
                metric="victim CPU during the flood",
                value=m["victim_cores"],
                unit="cores",
            )
        )
        gate = m["victim_gate"]
        notes.append(
            f"{kind}: during the flood the victim sent {gate.get('gate_retries', 0)} Retries, "
            f"admitted {gate.get('gate_admitted', 0) - gate.get('gate_admitted_after_retry', 0)} "
            f"handshakes without a token and {gate.get('gate_admitted_after_retry', 0)} after "
            "a Retry; failed connects: " + ("; ".join(flood["errors"]) or "none")
        )
    return make_result("handshake_flood", TITLE, rows, figures=figures, notes=notes)
