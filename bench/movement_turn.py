"""Movement over TURN vs direct: CPU per delivered position update and one-way latency.

Two ``mesh.PeerNode``s in two processes send each other ``RATE`` updates a second, first on
a direct QUIC path, then in the same run over a real coturn on loopback: node A allocates a
relayed address (TURN REST credentials, as the lobby issues them) and permits B; B dials that
address (``path="turn"``), so A's side of every datagram is framed as TURN ChannelData by the
node's TURN path and coturn relays both ways. CPU is both processes' ``time.process_time``
(coturn's own CPU is the operator's, not counted) over the window / updates delivered in it.
Goal (issue 13): TURN CPU per update <= 1.3x direct.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._common import LOOPS, latency_rows, make_result, row, versus
from bench._pairs import run_pair
from bench.run import main_one

__all__ = ["run"]

TITLE = "movement over TURN: CPU per update and latency vs direct (coturn on loopback)"
RATE = 60.0
TICK = 0.5 / RATE

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


def run(quick: bool) -> dict[str, Any]:
    duration = 1.0 if quick else 15.0
    warm = 0.2 if quick else 1.0
    from bench._mesh import lobby_key_bytes, peer_endpoint, product_skip_reason

    skip = product_skip_reason()
    if skip is None and shutil.which("turnserver") is None:
        skip = "coturn (`turnserver`) is not installed"
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    notes = [
        f"{RATE:g} updates/s each way for {duration:g} s (tick {TICK * 1000:.1f} ms); direct "
        "and TURN in the same run, one after the other; CPU = both node processes' "
        "process_time over the window / updates delivered (coturn's CPU not counted); "
        "latency = receive time - sender's stamp (one monotonic clock)."
    ]
    if skip is not None:
        return make_result("movement_turn", TITLE, rows, notes=notes, skipped=skip)
    with coturn() as server:
        for kind in LOOPS:
            opts: dict[str, Any] = {
                "lobby_key": lobby_key_bytes(),
                "config": {"tick_interval": TICK},
            }
            pair = functools.partial(run_pair, kind=kind, rate=RATE, duration=duration, warm=warm)
            direct = pair(peer_endpoint, opts)
            turn = pair(turn_endpoint, {**opts, "turn": server})
            figures[kind] = {"direct": direct, "turn": turn}
            rows.append(
                _cpu_row(
                    kind,
                    "PeerNode over TURN CPU/update",
                    turn,
                    direct,
                    "direct",
                    target=("ratio", "<=", 1.3),
                )
            )
            rows += latency_rows(kind, "PeerNode over TURN one-way {q}", turn, direct, "direct")
            rows.append(
                row(
                    loop=kind,
                    metric="over TURN delivered",
                    value=turn["delivery_ratio"],
                    unit="of sent",
                )
            )
    return make_result("movement_turn", TITLE, rows, figures=figures, notes=notes)


if __name__ == "__main__":
    main_one("movement_turn")
