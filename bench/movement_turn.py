"""Movement over TURN vs direct: CPU per delivered position update and one-way latency.

Two ``mesh.PeerNode``s in two processes send each other ``RATE`` updates a second on a direct
QUIC path; two more do the same over a real coturn on loopback: node A allocates a relayed
address (TURN REST credentials, as the lobby issues them) and permits B; B, with no
allocation of its own, dials that address (``path="turn"``), so A's side of every datagram is
framed as TURN ChannelData by the node's TURN path and coturn relays both ways. Each window
checks that this is what happened: both nodes say ``"turn"``, A's link runs through its own
allocation, B's goes to A's relayed address, and the bytes A's allocation carried are its
link's bytes (the benchmark stops otherwise). CPU is both node processes'
``time.process_time`` over a window / updates delivered in it; coturn's own CPU is the
operator's, not counted.

The figure is what OUR nodes spend per update. In production the TURN server runs on another
machine; here coturn is a third process woken by every datagram, on the same two cores as the
nodes, and the scheduler moving the nodes between cores around it (more CPU migrations, more
involuntary context switches, on both nodes, the dialling one included although its code path
is the direct one) is billed to them. So the target row pins each node process to a core of
its own (listeners on one CPU, diallers on another), in the direct and the TURN windows alike,
and leaves coturn unpinned. The same nodes measured unpinned give an extra row with no target,
so what sharing the cores with coturn costs stays in view. Pinning needs two CPUs; with one,
the target row is measured unpinned and a note says so.

Both pairs stay connected while pairs of one direct and one TURN window of ``WINDOW_S``
seconds run back to back (which path goes first alternates), ``PINNED_PAIRS`` of them pinned
and ``UNPINNED_PAIRS`` unpinned, spread through the run. Each pair of windows gives a
TURN/direct CPU ratio; a placement's rows are its pair with the median ratio, and its lowest
and highest ratio: on a shared machine one window can catch someone else's burst.
Goal (issue 13): TURN CPU per update <= 1.3x direct.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._common import LOOPS, BenchError, latency_rows, make_result, row, versus
from bench._pairs import Pair, Placement, pin_cpus
from bench.run import main_one

__all__ = ["MeshEndpoint", "check_path", "run", "schedule"]

TITLE = "movement over TURN: CPU per update and latency vs direct (coturn on loopback)"
RATE = 60.0
TICK = 0.5 / RATE
PINNED_PAIRS = 7
UNPINNED_PAIRS = 3
WINDOW_S = 3.0

_cpu_row = functools.partial(versus, key="cpu_per_update_us", unit="us")


class MeshEndpoint:
    """A PeerNode side that reports its path; ``options["turn"]`` (coturn's ``(host, port,
    secret)``): it allocates a relayed address there and is reached at it; ``options["path"]``
    ``"turn"``: it dials over TURN (the peer's relayed address), with no allocation of its own.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        from bench._mesh import PeerNodeEndpoint

        self.inner = PeerNodeEndpoint(options)
        self.options = options

    @property
    def sent_log(self) -> dict[int, int]:
        return self.inner.sent_log

    @property
    def credential(self) -> str | None:
        return self.inner.credential

    async def open(self, on_update: Any) -> tuple[str, int]:
        from protocol.turn import turn_rest_credentials

        address = await self.inner.open(on_update)
        if self.options.get("turn") is None:
            return address
        node = self.inner.node
        host, port, secret = self.options["turn"]
        creds = turn_rest_credentials(
            secret, str(self.inner.character_id), now=time.time(), ttl=600
        )
        allocated = await node.allocate_turn((host, port), creds.username, creds.password)
        node.permit_turn(["127.0.0.1"])
        return (str(allocated.relayed[0]), int(allocated.relayed[1]))

    async def connect(
        self, peer: tuple[str, int], dial: bool, credential: str | None = None
    ) -> None:
        import asyncio

        path = self.options.get("path", "direct")
        if dial and path != "direct":
            assert credential is not None
            await asyncio.wait_for(self.inner.node.connect(credential, peer, path=path), 15.0)
            return
        await self.inner.connect(peer, dial, credential)

    def send_update(self, seq: int, send_ns: int) -> None:
        self.inner.send_update(seq, send_ns)

    def path_report(self) -> dict[str, Any]:
        """The path to the one peer: which, where its datagrams go, bytes so far on the link
        and through our own TURN allocation (None: no allocation)."""
        from mesh.paths import TurnRoute
        from mesh.turn_path import TurnPath

        node = self.inner.node
        quality = next(iter(node.connection_qualities().values()), None)
        turn = node.turn
        address = quality.address if quality is not None else None
        return {
            "path": quality.path if quality is not None else None,
            "through_own_allocation": isinstance(address, TurnRoute),
            "address": None if address is None or isinstance(address, TurnRoute) else address,
            "link_bytes": 0 if quality is None else quality.bytes_sent + quality.bytes_received,
            "turn_bytes": turn.bytes_sent + turn.bytes_received
            if isinstance(turn, TurnPath)
            else None,
            "relayed": node.turn_address,
        }

    async def close(self) -> None:
        await self.inner.close()


async def mesh_endpoint(options: dict[str, Any]) -> MeshEndpoint:
    return MeshEndpoint(options)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_stun(address: tuple[str, int]) -> bool:
    from protocol.stun import binding_request, new_transaction_id

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        sock.sendto(binding_request(new_transaction_id()), address)
        try:
            sock.recvfrom(2048)
        except TimeoutError:
            return False
    return True


@contextlib.contextmanager
def coturn() -> Iterator[tuple[str, int, str]]:
    """coturn on 127.0.0.1 (use-auth-secret, loopback peers allowed): ``(host, port, secret)``."""
    secret = os.urandom(16).hex()
    host, port = "127.0.0.1", _free_udp_port()
    with tempfile.TemporaryDirectory(prefix="bench-turn-") as tmp:
        state = Path(tmp)
        process = subprocess.Popen(  # noqa: S603 - fixed argv, our own temporary directory
            [
                "turnserver",
                "-n",
                f"--listening-ip={host}",
                f"--relay-ip={host}",
                f"--listening-port={port}",
                "--use-auth-secret",
                f"--static-auth-secret={secret}",
                "--realm=shards",
                "--allow-loopback-peers",
                "--no-cli",
                "--no-tcp",  # the port is free for UDP; a busy TCP twin would stall coturn
                "--no-tls",
                "--no-dtls",
                "--no-stdout-log",
                f"--pidfile={state / 'turn.pid'}",
                f"--db={state / 'turn.db'}",
                f"--log-file={state / 'turn.log'}",
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            for _ in range(50):
                if process.poll() is not None:
                    raise RuntimeError(f"turnserver exited with {process.returncode}")
                if _answers_stun((host, port)):
                    break
            else:
                raise RuntimeError("coturn does not answer STUN")
            yield host, port, secret
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def schedule(pinned: int, unpinned: int) -> list[str]:
    """The placement of each pair of windows: both kinds spread evenly through the run."""
    marks = [((i + 0.5) / n, kind) for kind, n in (("pinned", pinned), ("unpinned", unpinned))
             for i in range(n)]  # fmt: skip
    return [kind for _, kind in sorted(marks)]


def check_path(path: str, window: dict[str, Any]) -> float | None:
    """Raise :class:`BenchError` unless both nodes' traffic took ``path`` over the whole
    window; over TURN, the share of node A's link bytes its own allocation carried."""
    a, b = window["paths"]["a"], window["paths"]["b"]
    for side, report in (("A", a), ("B", b)):
        for when in ("before", "after"):
            if report[when]["path"] != path:
                raise BenchError(f"node {side} was on {report[when]['path']!r}, not {path!r}")
    if path == "direct":
        return None
    a0, a1, b1 = a["before"], a["after"], b["after"]
    if not a1["through_own_allocation"] or a1["turn_bytes"] is None:
        raise BenchError("node A's link does not run through its TURN allocation")
    if b1["turn_bytes"] is not None or b1["address"] != a1["relayed"]:
        raise BenchError(f"node B sends to {b1['address']}, not A's relayed {a1['relayed']}")
    link = a1["link_bytes"] - a0["link_bytes"]
    relayed = a1["turn_bytes"] - a0["turn_bytes"]
    if link <= 0 or relayed <= 0:
        raise BenchError("no bytes went through coturn in a TURN window")
    return float(relayed / link)


def _windows(
    direct: Pair, turn: Pair, placement: Placement, *, pinned: int, unpinned: int,
    duration: float, warm: float,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Pairs of one direct and one TURN window back to back, ``pinned`` of them with the
    nodes pinned and ``unpinned`` not; per placement, each pair's TURN/direct CPU ratio and
    the pair with the median one."""
    pairs: dict[str, list[dict[str, Any]]] = {"pinned": [], "unpinned": []}
    for kind in schedule(pinned, unpinned):
        done = pairs[kind]
        if kind == "pinned":
            placement.pin()
        else:
            placement.unpin()
        order = ("direct", "turn") if len(done) % 2 == 0 else ("turn", "direct")
        got: dict[str, Any] = {}
        for path in order:
            window = (direct if path == "direct" else turn).exchange(
                rate=RATE, duration=duration, warm=warm
            )
            window["relayed_share"] = check_path(path, window)
            got[path] = window
        done.append(
            {
                **got,
                "first": order[0],
                "cpu_ratio": got["turn"]["cpu_per_update_us"] / got["direct"]["cpu_per_update_us"],
            }
        )
    placement.unpin()
    out: dict[str, dict[str, Any]] = {}
    for kind, done in pairs.items():
        if not done:
            continue
        ranked = sorted(done, key=lambda p: p["cpu_ratio"])
        out[kind] = {
            "pairs": done,
            "median": ranked[len(ranked) // 2],
            "cpu_ratios": [round(p["cpu_ratio"], 2) for p in done],
            "turn_delivery": statistics.fmean(p["turn"]["delivery_ratio"] for p in done),
            "relayed_share": min(p["turn"]["relayed_share"] for p in done),
        }
    return out


def _placement_note(kind: str, name: str, fig: dict[str, Any]) -> str:
    pairs = fig["pairs"]
    return (
        f"{kind}, {name}: TURN/direct CPU ratio of each pair {fig['cpu_ratios']} (first path: "
        f"{', '.join(p['first'] for p in pairs)}); CPU/update us direct "
        f"{[round(p['direct']['cpu_per_update_us']) for p in pairs]}, TURN "
        f"{[round(p['turn']['cpu_per_update_us']) for p in pairs]}; one-way p50 ms direct "
        f"{[round(p['direct']['p50_ms'], 3) for p in pairs]}, TURN "
        f"{[round(p['turn']['p50_ms'], 3) for p in pairs]}"
    )


def run(quick: bool) -> dict[str, Any]:
    duration = 1.0 if quick else WINDOW_S
    pinned_pairs, unpinned_pairs = (1, 1) if quick else (PINNED_PAIRS, UNPINNED_PAIRS)
    warm = 0.2 if quick else 0.5
    from bench._mesh import lobby_key_bytes, product_skip_reason

    skip = product_skip_reason()
    if skip is None and shutil.which("turnserver") is None:
        skip = "coturn (`turnserver`) is not installed"
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    notes = [
        f"{RATE:g} updates/s each way (tick {TICK * 1000:.1f} ms); one direct and one TURN "
        "pair of nodes kept connected (TURN: node A allocates on coturn, node B has no "
        "allocation and dials A's relayed address); pairs of one direct and one TURN window "
        f"of {duration:g} s back to back (which path goes first alternates), {pinned_pairs} "
        f"with the node processes pinned and {unpinned_pairs} unpinned, spread through the "
        "run. CPU = both node processes' process_time over the window / updates delivered "
        "(coturn's CPU not counted); latency = receive time - sender's stamp (one monotonic "
        "clock). Rows are each placement's pair with the median TURN/direct CPU ratio.",
        "Pinned: each pair's listener on one CPU and its dialler on another, in the direct "
        "and the TURN windows alike; coturn unpinned. The target is what our nodes spend per "
        "update, and a TURN server runs on another machine in production: here coturn is a "
        "third process woken by every datagram on the nodes' cores, and the extra CPU "
        "migrations and involuntary context switches it causes land on both nodes, the "
        "dialling one included, whose code path is the direct one. The unpinned row shows "
        "that cost; it has no target.",
    ]
    if skip is not None:
        return make_result("movement_turn", TITLE, rows, notes=notes, skipped=skip)
    allowed, cpus = pin_cpus()
    if cpus is None:  # one CPU: every window unpinned, and the target row is theirs
        unpinned_pairs += pinned_pairs
        pinned_pairs = 0
        notes.append(
            f"Not pinned: the benchmark may run on {len(allowed) or 'an unknown number of'} "
            "CPU(s) and pinning needs two; the target row is the unpinned median."
        )
    else:
        notes.append(
            f"Listeners pinned to CPU {cpus[0]}, diallers to CPU {cpus[1]}; unpinned: CPUs "
            f"{sorted(allowed)}."
        )
    with coturn() as server:
        for kind in LOOPS:
            opts: dict[str, Any] = {
                "lobby_key": lobby_key_bytes(),
                "config": {"tick_interval": TICK},
            }
            with (
                Pair(mesh_endpoint, opts, kind=kind) as direct,
                Pair(
                    mesh_endpoint,
                    {**opts, "turn": server},
                    kind=kind,
                    dialler_options={**opts, "path": "turn"},
                ) as turn,
            ):
                fig = _windows(
                    direct,
                    turn,
                    Placement([direct, turn]),
                    pinned=pinned_pairs,
                    unpinned=unpinned_pairs,
                    duration=duration,
                    warm=warm,
                )
            figures[kind] = fig
            rows += _rows(kind, fig)
            for name in ("pinned", "unpinned"):
                if name in fig:
                    notes.append(_placement_note(kind, name, fig[name]))
    return make_result("movement_turn", TITLE, rows, figures=figures, notes=notes)


def _rows(kind: str, fig: dict[str, Any]) -> list[dict[str, Any]]:
    """The target row and its companions from the pinned median (the unpinned one when the
    machine cannot pin), then the unpinned median as an extra row."""
    target_name = "pinned" if "pinned" in fig else "unpinned"
    main = fig[target_name]
    label = "nodes pinned" if target_name == "pinned" else "one CPU, not pinned"
    median = main["median"]
    rows = [
        _cpu_row(
            kind,
            f"PeerNode over TURN CPU/update ({label})",
            median["turn"],
            median["direct"],
            "direct",
            target=("ratio", "<=", 1.3),
        ),
        *latency_rows(
            kind,
            f"PeerNode over TURN one-way {{q}} ({label})",
            median["turn"],
            median["direct"],
            "direct",
        ),
    ]
    ratios = main["cpu_ratios"]
    rows.append(
        row(
            loop=kind, metric=f"TURN/direct CPU, lowest pair ({label})", value=min(ratios), unit="x"
        )
    )
    rows.append(
        row(
            loop=kind,
            metric=f"TURN/direct CPU, highest pair ({label})",
            value=max(ratios),
            unit="x",
        )
    )
    if target_name == "pinned" and "unpinned" in fig:
        loose = fig["unpinned"]["median"]
        rows.append(
            _cpu_row(
                kind,
                "PeerNode over TURN CPU/update (nodes unpinned, beside coturn)",
                loose["turn"],
                loose["direct"],
                "direct",
            )
        )
    every = [p for name in ("pinned", "unpinned") if name in fig for p in fig[name]["pairs"]]
    rows.append(
        row(
            loop=kind,
            metric="over TURN delivered",
            value=statistics.fmean(p["turn"]["delivery_ratio"] for p in every),
            unit="of sent",
        )
    )
    rows.append(
        row(
            loop=kind,
            metric="over TURN: node A's link bytes carried by its allocation, least window",
            value=min(p["turn"]["relayed_share"] for p in every),
            unit="fraction",
        )
    )
    return rows


if __name__ == "__main__":
    main_one("movement_turn")
