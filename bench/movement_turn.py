"""Movement over TURN vs direct: CPU per delivered position update and one-way latency.

Two ``mesh.PeerNode``s in two processes send each other ``RATE`` updates a second on a direct
QUIC path; two more do the same over a real coturn on loopback: node A allocates a relayed
address (TURN REST credentials, as the lobby issues them) and permits B; B dials that address
(``path="turn"``), so A's side of every datagram is framed as TURN ChannelData by the node's
TURN path and coturn relays both ways. CPU is both processes' ``time.process_time`` (coturn's
own CPU is the operator's, not counted) over a window / updates delivered in it.

Both pairs stay connected while ``WINDOWS`` direct and ``WINDOWS`` TURN windows of ``WINDOW_S``
seconds alternate, in pairs whose first path alternates too (direct first, then TURN first,
...). Each pair of windows gives a TURN/direct CPU ratio; the rows report the pair with the
median ratio, and the lowest and highest ratio: on a shared two-core machine one window can
catch someone else's burst (the single 15 s window per path this replaced gave 0.89-1.86x over
eight runs of the same code). Goal (issue 13): TURN CPU per update <= 1.3x direct.
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

from bench._common import LOOPS, latency_rows, make_result, row, versus
from bench._pairs import Pair
from bench.run import main_one

__all__ = ["run"]

TITLE = "movement over TURN: CPU per update and latency vs direct (coturn on loopback)"
RATE = 60.0
TICK = 0.5 / RATE
WINDOWS = 5
WINDOW_S = 3.0

_cpu_row = functools.partial(versus, key="cpu_per_update_us", unit="us")


class TurnPeerEndpoint:
    """A PeerNode that allocates on the benchmark's coturn and is reached over it."""

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

        await self.inner.open(on_update)
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

        if dial:
            assert credential is not None
            await asyncio.wait_for(self.inner.node.connect(credential, peer, path="turn"), 15.0)
            return
        await self.inner.connect(peer, dial, credential)

    def send_update(self, seq: int, send_ns: int) -> None:
        self.inner.send_update(seq, send_ns)

    async def close(self) -> None:
        await self.inner.close()


async def turn_endpoint(options: dict[str, Any]) -> TurnPeerEndpoint:
    return TurnPeerEndpoint(options)


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


def _alternate(
    direct: Pair, turn: Pair, *, windows: int, duration: float, warm: float
) -> dict[str, Any]:
    """``windows`` pairs of one direct and one TURN window, back to back; the first path of
    each pair alternates. Each pair's TURN/direct CPU ratio; the pair with the median one."""
    pairs: list[dict[str, Any]] = []
    for i in range(windows):
        order = ("direct", "turn") if i % 2 == 0 else ("turn", "direct")
        got = {
            path: (direct if path == "direct" else turn).exchange(
                rate=RATE, duration=duration, warm=warm
            )
            for path in order
        }
        pairs.append(
            {
                **got,
                "first": order[0],
                "cpu_ratio": got["turn"]["cpu_per_update_us"] / got["direct"]["cpu_per_update_us"],
            }
        )
    ranked = sorted(pairs, key=lambda p: p["cpu_ratio"])
    return {
        "pairs": pairs,
        "median": ranked[len(ranked) // 2],
        "cpu_ratios": [round(p["cpu_ratio"], 2) for p in pairs],
        "turn_delivery": statistics.fmean(p["turn"]["delivery_ratio"] for p in pairs),
    }


def run(quick: bool) -> dict[str, Any]:
    duration = 1.0 if quick else WINDOW_S
    windows = 1 if quick else WINDOWS
    warm = 0.2 if quick else 0.5
    from bench._mesh import lobby_key_bytes, peer_endpoint, product_skip_reason

    skip = product_skip_reason()
    if skip is None and shutil.which("turnserver") is None:
        skip = "coturn (`turnserver`) is not installed"
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    notes = [
        f"{RATE:g} updates/s each way (tick {TICK * 1000:.1f} ms); one direct and one TURN "
        f"pair of nodes kept connected, {windows} direct and {windows} TURN windows of "
        f"{duration:g} s alternating in pairs (which path goes first alternates too); the "
        "CPU and latency rows are the pair with the median TURN/direct CPU ratio. CPU = both "
        "node processes' process_time over the window / updates delivered (coturn's CPU not "
        "counted); latency = receive time - sender's stamp (one monotonic clock)."
    ]
    if skip is not None:
        return make_result("movement_turn", TITLE, rows, notes=notes, skipped=skip)
    with coturn() as server:
        for kind in LOOPS:
            opts: dict[str, Any] = {
                "lobby_key": lobby_key_bytes(),
                "config": {"tick_interval": TICK},
            }
            with (
                Pair(peer_endpoint, opts, kind=kind) as direct,
                Pair(turn_endpoint, {**opts, "turn": server}, kind=kind) as turn,
            ):
                fig = _alternate(direct, turn, windows=windows, duration=duration, warm=warm)
            figures[kind] = fig
            median = fig["median"]
            rows.append(
                _cpu_row(
                    kind,
                    "PeerNode over TURN CPU/update",
                    median["turn"],
                    median["direct"],
                    "direct",
                    target=("ratio", "<=", 1.3),
                )
            )
            rows += latency_rows(
                kind, "PeerNode over TURN one-way {q}", median["turn"], median["direct"], "direct"
            )
            ratios = fig["cpu_ratios"]
            rows.append(
                row(loop=kind, metric="TURN/direct CPU, lowest pair", value=min(ratios), unit="x")
            )
            rows.append(
                row(loop=kind, metric="TURN/direct CPU, highest pair", value=max(ratios), unit="x")
            )
            rows.append(
                row(
                    loop=kind,
                    metric="over TURN delivered",
                    value=fig["turn_delivery"],
                    unit="of sent",
                )
            )
            notes.append(
                f"{kind}: TURN/direct CPU ratio of each pair {ratios} (first path: "
                f"{', '.join(p['first'] for p in fig['pairs'])}); CPU/update us direct "
                f"{[round(p['direct']['cpu_per_update_us']) for p in fig['pairs']]}, TURN "
                f"{[round(p['turn']['cpu_per_update_us']) for p in fig['pairs']]}; one-way "
                f"p50 ms direct {[round(p['direct']['p50_ms'], 3) for p in fig['pairs']]}, "
                f"TURN {[round(p['turn']['p50_ms'], 3) for p in fig['pairs']]}"
            )
    return make_result("movement_turn", TITLE, rows, figures=figures, notes=notes)


if __name__ == "__main__":
    main_one("movement_turn")
