"""Trading and fighting steps of cluster players (each checks the answer it waits for)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.lobby.cluster.conftest import Player

__all__ = [
    "Refused",
    "answer",
    "fight_to_the_end",
    "foe",
    "inventory",
    "open_trade",
    "refused",
    "request",
    "totals",
]

_requests = iter(range(1, 1_000_000))


class Refused(AssertionError):
    """A request was answered ERROR (the message is the answer)."""


async def answer(p: Player, ref: str, *, wait: float = 10.0) -> dict[str, Any]:
    """The ACK or ERROR answering ``p``'s request ``ref``."""
    return await p.inbox.next(lambda m: m.get("ref_id") == ref, wait=wait)


async def request(p: Player, msg_type: str, **fields: Any) -> dict[str, Any]:
    """Send a request and return its ACK (:class:`Refused` on ERROR)."""
    ref = f"{msg_type}-{next(_requests)}"
    await p.send(msg_type, message_id=ref, **fields)
    got = await answer(p, ref)
    if got["type"] != "ack":
        raise Refused(got)
    return got


async def refused(p: Player, msg_type: str, **fields: Any) -> dict[str, Any]:
    """Send a request and return its ERROR (fails on ACK)."""
    ref = f"{msg_type}-{next(_requests)}"
    await p.send(msg_type, message_id=ref, **fields)
    got = await answer(p, ref)
    assert got["type"] == "error", got
    return got


async def inventory(p: Player) -> dict[str, Any]:
    status, body, _ = await p.api.call("GET", "/api/inventory")
    assert status == 200, body
    return dict(body)


async def totals(players: list[Player]) -> tuple[list[int], int]:
    """Every item id the players own (sorted) and their gold, summed."""
    items: list[int] = []
    gold = 0
    for p in players:
        inv = await inventory(p)
        items += [i["item_id"] for i in inv["items"]]
        gold += int(inv["gold"])
    return sorted(items), gold


async def open_trade(a: Player, b: Player) -> str:
    """``a`` asks ``b`` (wherever each plays), ``b`` accepts: the trade id."""
    tid = str((await request(a, "trade_request", target_id=b.id))["details"]["trade_id"])
    asked = await b.inbox.next(
        lambda m: m.get("type") == "trade_request" and m.get("trade_id") == tid
    )
    assert asked["initiator_id"] == a.id
    await request(b, "trade_accept", trade_id=tid)
    for p in (a, b):  # the window may come before the ACK: look at what came too
        await p.seen_or_next(lambda m: m.get("type") == "trade_update" and m["trade_id"] == tid)
    return tid


def foe(p: Player) -> dict[str, Any]:
    """``p`` as a COMBAT_START participant (the lobby reads only the id)."""
    return {"id": p.id, "name": p.character["name"], "health": 1, "max_health": 1}


async def fight_to_the_end(fleeing: Player, combat_id: str, *, attempts: int = 30) -> None:
    """``fleeing`` tries to flee until it gets away (each try waits out the cooldown the
    lobby names in its refusal); fails after ``attempts`` tries."""
    for _ in range(attempts):
        ref = f"flee-{next(_requests)}"
        await fleeing.send("combat_action", message_id=ref, combat_id=combat_id, action_type="flee")
        got = await answer(fleeing, ref)
        if got["type"] == "error":
            assert got["error_code"] == "on_cooldown", got
            # the rule is a time: wait until the moment the lobby gave
            await asyncio.sleep(max(0.0, float(got["details"]["retry_at"]) - time.time()))
            continue
        turn = got["details"]["round"]
        state = await fleeing.seen_or_next(
            lambda m, turn=turn: (
                m.get("type") == "combat_state"
                and m["combat_id"] == combat_id
                and m["round"] == turn
            )
        )
        if not state["active"]:
            return
    raise AssertionError(f"{fleeing.id} could not flee in {attempts} tries")
