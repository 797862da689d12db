"""Codec: JSON encode+decode of representative messages and the binary movement codec, vs orjson.

``python -m bench.codec [--quick]`` prints operations a second (one op = encode then decode
one message) and ratios ours/orjson, where the baseline is ``orjson.dumps`` + ``orjson.loads``
of the same data (the message's JSON-mode dict), measured in the same run. Our JSON codec
does more than the baseline: it validates every field and builds pydantic models.
Targets: JSON >= 0.5x orjson, binary movement >= 1.5x orjson. Each figure is the best of a
few interleaved rounds (least disturbed by other load on the machine).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import protocol
from bench._common import make_result, row
from bench.run import main_one
from protocol import movement

__all__ = ["run", "sample_messages"]

TITLE = "codec: JSON and binary movement vs orjson"
LOOP = "n/a"  # no event loop involved

try:
    import orjson

    def _base_dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    _base_loads: Callable[[bytes], Any] = orjson.loads
    BASELINE = "orjson dumps+loads"
except ImportError:  # pragma: no cover - orjson is a test dependency

    def _base_dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    _base_loads = json.loads
    BASELINE = "json dumps+loads (orjson missing)"


def sample_messages() -> dict[str, protocol.BaseMessage]:
    """The representative messages: chat, movement (JSON twin), combat, character, world, error."""
    shards = [
        protocol.ShardInfo(
            shard_id=i,
            shard_name=f"Shard {i}",
            owner_faction="Crimson Covenant" if i % 2 else None,
            location_id=i,
        )
        for i in range(1, 8)
    ]
    return {
        "chat": protocol.create_chat_message(1, "TestUser", "Hello, world!"),
        "position_update": protocol.create_position_update(
            42, 7, (101.5, 20.25, -3.75), (1.0, 0.0, 0.5), sent_at=12345.678, seq=9
        ),
        "combat_action": protocol.create_combat_action(
            "combat_123", "spell", target_id=456, ability_name="Fireball"
        ),
        "character_update": protocol.create_character_update(1, "Aria", 5, 80, 100, 3),
        "world_state": protocol.WorldStateMessage(
            current_reality="Prime",
            shards=shards,
            faction_scores={"Crimson Covenant": 4, "Azure Order": 3},
            online_players=12,
        ),
        "error": protocol.create_error_message(
            protocol.ErrorCode.INVALID_MESSAGE, "invalid chat message: content: too long"
        ),
    }


def _rates(fns: dict[str, tuple[Callable[[], object], int]], repeats: int) -> dict[str, float]:
    """Best ops/s of each ``(fn, ops_per_call)`` over ``repeats`` rounds of ``_N`` calls.

    Each round runs every function once, interleaved, so a burst of load on the
    machine hits ours and the baseline alike instead of skewing one ratio.
    """
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, (fn, _ops) in fns.items():
            calls = max(1, _N[0] // _ops)
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / (calls * _ops))
    return {name: 1.0 / seconds for name, seconds in best.items()}


_N = [30_000]  # calls per round (set by run)


def run(quick: bool) -> dict[str, Any]:
    """Measure; returns the common result shape (rows and a flat ``figures`` dict)."""
    n = 2_000 if quick else 30_000
    _N[0] = n
    repeats = 3 if quick else 7
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    ser = protocol.serialize_bytes
    de = protocol.deserialize

    # JSON: each representative message, and the mix (total time over the set).
    ours_total = base_total = 0.0
    for name, msg in sample_messages().items():
        plain = msg.model_dump(mode="json")
        assert de(ser(msg)) == msg
        got = _rates(
            {
                "ours": (lambda m=msg: de(ser(m)), 1),
                "base": (lambda d=plain: _base_loads(_base_dumps(d)), 1),
            },
            repeats,
        )
        ours, base = got["ours"], got["base"]
        ours_total += 1 / ours
        base_total += 1 / base
        figures[f"json_{name}_ops"] = ours
        figures[f"json_{name}_baseline_ops"] = base
        rows.append(
            row(
                loop=LOOP,
                metric=f"JSON encode+decode {name}",
                value=ours,
                unit="ops/s",
                baseline=base,
                baseline_name=BASELINE,
            )
        )
    count = len(sample_messages())
    mix, mix_base = count / ours_total, count / base_total  # ops/s averaged over the set
    figures["json_mix_ops"] = mix
    figures["json_mix_baseline_ops"] = mix_base
    figures["json_ratio"] = mix / mix_base
    rows.append(
        row(
            loop=LOOP,
            metric="JSON encode+decode, mix of the messages above",
            value=mix,
            unit="ops/s",
            baseline=mix_base,
            baseline_name=BASELINE,
            target=("ratio", ">=", 0.5),
        )
    )

    # Binary movement vs orjson of the same update.
    update = sample_messages()["position_update"]
    assert isinstance(update, protocol.PositionUpdateMessage)
    plain = update.model_dump(mode="json")
    record = movement.MovementRecord.from_message(update)
    batch = [update.model_copy(update={"seq": i, "character_id": 100 + i}) for i in range(20)]
    batch_payload = movement.encode_movement_batch(batch)
    records = [movement.MovementRecord.from_message(u) for u in batch]
    got = _rates(
        {
            "base": (lambda: _base_loads(_base_dumps(plain)), 1),
            "model": (lambda: movement.decode_movement(movement.encode_movement(update)), 1),
            "raw": (lambda: movement.unpack_movement(movement.pack_movement(record)), 1),
            "batch": (
                lambda: movement.decode_movement_batch(movement.encode_movement_batch(batch)),
                20,
            ),
            "raw_batch": (
                lambda: movement.unpack_movement_batch(movement.encode_movement_batch(batch)),
                20,
            ),
            "record_batch": (
                lambda: movement.unpack_movement_batch(movement.pack_movement_batch(records)),
                20,
            ),
        },
        repeats,
    )
    base, model, raw = got["base"], got["model"], got["raw"]
    batch_rate, raw_batch_rate, record_batch_rate = (
        got["batch"],
        got["raw_batch"],
        got["record_batch"],
    )
    figures.update(
        binary_baseline_ops=base,
        binary_model_ops=model,
        binary_record_ops=raw,
        binary_batch20_model_ops_per_update=batch_rate,
        binary_batch20_model_encode_record_decode_ops_per_update=raw_batch_rate,
        binary_batch20_record_ops_per_update=record_batch_rate,
        binary_ratio_model=model / base,
        binary_ratio_record=raw / base,
        binary_single_bytes=len(movement.encode_movement(update)),
        binary_batch20_bytes=len(batch_payload),
        json_position_update_bytes=len(ser(update)),
        baseline_position_update_bytes=len(_base_dumps(plain)),
    )
    for metric, value, targeted in (
        ("binary movement encode+decode, PositionUpdateMessage models", model, True),
        ("binary movement pack+unpack, MovementRecord tuples", raw, True),
        ("binary movement batch of 20, models (per update)", batch_rate, False),
        ("binary movement batch of 20, models encoded, records decoded", raw_batch_rate, False),
        ("binary movement batch of 20, records pack+unpack (per update)", record_batch_rate, True),
    ):
        rows.append(
            row(
                loop=LOOP,
                metric=metric,
                value=value,
                unit="ops/s",
                baseline=base,
                baseline_name=BASELINE + " of the update's dict",
                target=("ratio", ">=", 1.5) if targeted else None,
            )
        )
    notes = [
        f"best of {repeats} interleaved rounds of {n} ops; one op = encode then decode one "
        "message (batch rows: per update).",
        "JSON: ours validates every field and builds pydantic models; the baseline only "
        "parses to dicts.",
        "binary: a PositionUpdateMessage is three pydantic objects (message and two Vec3), "
        "built without re-validation; MovementRecord (a checked NamedTuple) is the form for "
        "per-datagram hot paths, models only where a handler wants one.",
        f"sizes: binary single {figures['binary_single_bytes']} B, batch of 20 "
        f"{figures['binary_batch20_bytes']} B, JSON position update "
        f"{figures['json_position_update_bytes']} B.",
    ]
    return make_result("codec", TITLE, rows, figures=figures, notes=notes)


if __name__ == "__main__":
    main_one("codec")
