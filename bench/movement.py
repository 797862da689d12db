"""Movement: CPU per delivered position update and one-way latency, PeerNode vs bare transports.

Two endpoints in two processes send each other ``RATE`` updates a second; CPU is both
processes' ``time.process_time`` over a window, divided by the updates delivered in it (both
directions). Baselines in the same run: raw asyncio UDP and a bare aioquic DATAGRAM pair. The
product is two ``mesh.PeerNode``s (see ``bench._mesh``). Target: PeerNode CPU per update <= 0.7x
bare aioquic (issue 16).

Every pair of endpoints stays connected for the whole run, and the run is ``ROUNDS`` rounds of
one short window of each pair, the order rotating from round to round: a burst of someone else's
work on the machine lands in one window, not in a whole pair's figure. Each round gives a
PeerNode / bare aioquic CPU ratio; the rows are the round with the median ratio, and the notes
list every round.

Every pair's listener runs pinned to one CPU and its dialler to another (``bench._pairs.
Placement``), as two machines would: every update crosses between cores. Unpinned, the
scheduler sometimes runs the receiver on the sender's warm core and sometimes wakes the other
one, and which it does shifts from window to window. In one run alternating pinned and unpinned
rounds of the same pairs, the round ratios spread 0.76-1.20 unpinned (standard deviation 0.16)
and 0.73-0.98 pinned (0.10). With one CPU nothing is pinned, and a note says so.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from bench._common import LOOPS, latency_rows, make_result, row, versus
from bench._pairs import Pair, Placement, QuicEndpoint, UdpEndpoint

__all__ = ["run"]

TITLE = "movement: two PeerNodes, CPU per update and latency"
RATE = 60.0  # updates a second, each direction: the top of the seed's 20-60 Hz
#: The node's movement tick, under the send period so each update leaves at once (a game calls
#: ``send_position_update`` once per frame; the tick only batches several characters' updates).
TICK = 0.5 / RATE
PAYLOAD = 43  # bytes: one binary movement update (protocol.movement.SINGLE_SIZE)
ROUNDS = 11  # rounds of one window of every pair (full mode)
WINDOW = 1.5  # seconds measured per window (full mode), after a 0.5 s warm-up


#: CPU per delivered update of one run against another's
_cpu_row = functools.partial(versus, key="cpu_per_update_us", unit="us")


async def _udp(options: dict[str, Any]) -> UdpEndpoint:
    return UdpEndpoint(options["size"])


async def _quic(options: dict[str, Any]) -> QuicEndpoint:
    return QuicEndpoint(options["size"])


def _rounds(
    pairs: dict[str, Pair], *, rounds: int, duration: float, warm: float
) -> list[dict[str, dict[str, Any]]]:
    """``rounds`` rounds of one window of every pair, the first pair rotating each round."""
    names = list(pairs)
    done: list[dict[str, dict[str, Any]]] = []
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        done.append(
            {name: pairs[name].exchange(rate=RATE, duration=duration, warm=warm) for name in order}
        )
    return done


def _median_round(
    done: list[dict[str, dict[str, Any]]], ours: str, base: str
) -> tuple[dict[str, dict[str, Any]], list[float]]:
    """The round whose ``ours``/``base`` CPU ratio is the median, and every round's ratio."""
    ratios = [r[ours]["cpu_per_update_us"] / r[base]["cpu_per_update_us"] for r in done]
    ranked = sorted(range(len(done)), key=ratios.__getitem__)
    return done[ranked[len(ranked) // 2]], ratios


def run(quick: bool) -> dict[str, Any]:
    rounds = 1 if quick else ROUNDS
    duration = 1.0 if quick else WINDOW
    warm = 0.2 if quick else 0.5
    try:
        from bench._mesh import lobby_key_bytes, peer_endpoint, product_skip_reason
    except ImportError as exc:  # pragma: no cover - bench._mesh is ours; guards a bad merge
        skip: str | None = f"bench._mesh: {exc}"
    else:
        skip = product_skip_reason()
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    notes = [
        f"{RATE:g} updates/s each way, {rounds} round(s) of one {duration:g} s window of each "
        f"pair, the order rotating (PeerNode tick {TICK * 1000:.1f} ms, ACKs tuned, the "
        "default; full mode adds a PeerNode pair with aioquic's stock ACKs, ack_tuning=False); "
        "CPU = both processes' process_time over the window / updates delivered in it; "
        "latency = receive time - sender's stamp (one monotonic clock). Rows: the round with "
        "the median PeerNode / bare aioquic CPU ratio."
    ]
    if Placement([]).cpus is None:
        notes.append("one CPU: the pairs run unpinned (placement as the scheduler chooses)")
    else:
        notes.append("every pair's listener pinned to one CPU and its dialler to another")
    opts = {"size": PAYLOAD}
    for kind in LOOPS:
        with contextlib.ExitStack() as stack:
            pairs = {
                "udp": stack.enter_context(Pair(_udp, opts, kind=kind)),
                "aioquic": stack.enter_context(Pair(_quic, opts, kind=kind)),
            }
            if skip is None:
                key = lobby_key_bytes()
                node_opts = {"lobby_key": key, "config": {"tick_interval": TICK}}
                pairs["peernode"] = stack.enter_context(Pair(peer_endpoint, node_opts, kind=kind))
                if not quick:
                    stock_opts = {
                        "lobby_key": key,
                        "config": {"tick_interval": TICK, "ack_tuning": False},
                    }
                    pairs["peernode_stock_acks"] = stack.enter_context(
                        Pair(peer_endpoint, stock_opts, kind=kind)
                    )
            placement = Placement(list(pairs.values()))
            if placement.cpus is not None:
                placement.pin()
            done = _rounds(pairs, rounds=rounds, duration=duration, warm=warm)
        ours = "peernode" if skip is None else "aioquic"
        base = "aioquic" if skip is None else "udp"
        chosen, ratios = _median_round(done, ours, base)
        figures[kind] = {**chosen, "rounds": done, "cpu_ratios": ratios}
        udp, quic = chosen["udp"], chosen["aioquic"]
        rows.append(_cpu_row(kind, "bare aioquic CPU/update", quic, udp, "raw UDP"))
        if skip is None:
            node = chosen["peernode"]
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
            stock = chosen.get("peernode_stock_acks")
            if stock is not None:
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
            notes.append(
                f"{kind}: PeerNode / bare aioquic CPU ratio of each round "
                f"{[round(r, 3) for r in ratios]}; CPU/update us PeerNode "
                f"{[round(r['peernode']['cpu_per_update_us'], 1) for r in done]}, bare aioquic "
                f"{[round(r['aioquic']['cpu_per_update_us'], 1) for r in done]}."
            )
        else:
            rows += latency_rows(kind, "bare aioquic one-way {q}", quic, udp, "raw UDP")
    return make_result("movement", TITLE, rows, figures=figures, notes=notes, skipped=skip)
