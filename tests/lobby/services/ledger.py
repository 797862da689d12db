"""Replaying recorded trades: what the ``trades`` table says must explain every holding."""

from __future__ import annotations

import json
from collections.abc import Iterable

__all__ = ["replay_trades"]


def replay_trades(
    owners: dict[int, int], gold: dict[int, int], exchanges: Iterable[str]
) -> tuple[dict[int, int], dict[int, int]]:
    """Item owners and gold after applying each recorded ``exchange`` (JSON) to a copy of
    ``owners`` and ``gold``; asserts each transfer moves items its sender owned and leaves
    no balance negative."""
    owners, gold = dict(owners), dict(gold)
    for exchange in exchanges:
        for t in json.loads(exchange)["transfers"]:
            for it in t["items"]:
                assert owners[it["item_id"]] == t["from_id"], (it, t)
                owners[it["item_id"]] = t["to_id"]
            gold[t["from_id"]] -= t["gold"]
            gold[t["to_id"]] += t["gold"]
            assert gold[t["from_id"]] >= 0, t
    return owners, gold
