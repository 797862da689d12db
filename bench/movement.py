"""Movement: CPU per delivered position update and one-way latency, PeerNode vs bare transports.

Two endpoints in two processes send each other ``RATE`` updates a second for the window;
CPU is each process's ``time.process_time`` over the window, divided by the updates delivered
in it (both directions). Baselines in the same run: raw asyncio UDP and a bare aioquic
DATAGRAM pair. The product is two ``mesh.PeerNode``s (see ``bench._mesh``). Target: PeerNode CPU
per update <= 0.7x bare aioquic (issue 16).
"""

from __future__ import annotations

import functools
from typing import Any

from bench._common import LOOPS, latency_rows, make_result, row, versus
from bench._pairs import QuicEndpoint, UdpEndpoint, run_pair

__all__ = ["run"]

TITLE = "movement: two PeerNodes, CPU per update and latency"
RATE = 60.0  # updates a second, each direction: the top of the seed's 20-60 Hz
#: The node's movement tick, under the send period so each update leaves at once (a game calls
#: ``send_position_update`` once per frame; the tick only batches several characters' updates).
TICK = 0.5 / RATE
PAYLOAD = 43  # bytes: one binary movement update (protocol.movement.SINGLE_SIZE)


#: CPU per delivered update of one run against another's
_cpu_row = functools.partial(versus, key="cpu_per_update_us", unit="us")


async def _udp(options: dict[str, Any]) -> UdpEndpoint:
    return UdpEndpoint(options["size"])


async def _quic(options: dict[str, Any]) -> QuicEndpoint:
    return QuicEndpoint(options["size"])


def run(quick: bool) -> dict[str, Any]:
    duration = 1.0 if quick else 15.0
    warm = 0.2 if quick else 1.0
    try:
        from bench._mesh import lobby_key_bytes, peer_endpoint, product_skip_reason
    except ImportError as exc:  # pragma: no cover - bench._mesh is ours; guards a bad merge
        skip: str | None = f"bench._mesh: {exc}"
    else:
        skip = product_skip_reason()
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    notes = [
        f"{RATE:g} updates/s each way for {duration:g} s (PeerNode tick {TICK * 1000:.1f} ms, "
        "ACKs tuned, the default; full mode adds a run with aioquic's stock ACKs, "
        "ack_tuning=False); CPU = both processes' "
        "process_time "
        "over the window / updates delivered in it; latency = receive time - sender's stamp "
        "(one monotonic clock)."
    ]
    for kind in LOOPS:
        opts = {"size": PAYLOAD}
        udp = run_pair(_udp, opts, kind=kind, rate=RATE, duration=duration, warm=warm)
        quic = run_pair(_quic, opts, kind=kind, rate=RATE, duration=duration, warm=warm)
        figures[kind] = {"udp": udp, "aioquic": quic}
        rows.append(_cpu_row(kind, "bare aioquic CPU/update", quic, udp, "raw UDP"))
        if skip is None:
            node_opts = {"lobby_key": lobby_key_bytes(), "config": {"tick_interval": TICK}}
            node = run_pair(
                peer_endpoint, node_opts, kind=kind, rate=RATE, duration=duration, warm=warm
            )
            figures[kind]["peernode"] = node
            rows.append(
                _cpu_row(
                    kind,
                    "PeerNode CPU/update",
                    node,
                    quic,
                    "bare aioquic",
                    target=("ratio", "<=", 0.7),
                )
            )
            rows.append(_cpu_row(kind, "PeerNode CPU/update vs UDP", node, udp, "raw UDP"))
            rows += latency_rows(kind, "PeerNode one-way {q}", node, quic, "bare aioquic")
            if not quick:
                stock_opts = {
                    "lobby_key": node_opts["lobby_key"],
                    "config": {"tick_interval": TICK, "ack_tuning": False},
                }
                stock = run_pair(
                    peer_endpoint, stock_opts, kind=kind, rate=RATE, duration=duration, warm=warm
                )
                figures[kind]["peernode_stock_acks"] = stock
                rows.append(
                    _cpu_row(
                        kind, "PeerNode stock-ACK CPU/update", stock, node, "PeerNode, ACKs tuned"
                    )
                )
            rows.append(
                row(
                    loop=kind,
                    metric="PeerNode delivered",
                    value=node["delivery_ratio"],
                    unit="of sent",
                )
            )
        else:
            rows += latency_rows(kind, "bare aioquic one-way {q}", quic, udp, "raw UDP")
    return make_result("movement", TITLE, rows, figures=figures, notes=notes, skipped=skip)
