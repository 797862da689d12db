"""The trade state machine: request, accept, offers, confirmations, exchange.

States::

    requested --accept--> open --both confirm--> committing --committed()--> completed
        |  \\--decline--> declined           |                    \\--failed()--> cancelled
        \\--cancel/expire--> cancelled  <-----/ cancel

Rules (refusals are :class:`~protocol.errors.GameRuleError`, mostly ``TRADE_INVALID``):

* only the requested partner accepts or declines, before
  ``rules.trade_request_ttl_seconds`` have passed; nobody trades with themself;
* offers are item ids with quantities (a plain list of ids means one of each,
  for unique items; a mapping gives stack quantities) and gold >= 0; an
  offer that differs from the current one **clears both confirmations** and bumps
  ``version``; re-sending the same offer changes nothing. Items the lobby keeps as
  unique instances are offered once each with quantity 1 (:func:`unique_item_ids`);
* a confirmation may name the ``version`` it saw, or the offers it saw, so a
  confirmation of an offer that changed meanwhile is refused instead of counted;
* when both have confirmed, :meth:`Trade.confirm` returns the :class:`TradeExchange`
  and the trade waits in ``committing``: the storage layer applies it in one
  transaction, re-checking ownership and amounts, then calls
  :meth:`~Trade.committed` or :meth:`~Trade.failed`;
* the pure layer checks ownership early only when given the actor's items and gold
  (``ITEM_NOT_OWNED``, ``INSUFFICIENT_GOLD``); the commit check is the one that counts.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lobby.game._common import refuse
from lobby.game.world import RulesDef
from protocol.errors import ErrorCode

__all__ = [
    "MAX_GOLD",
    "MAX_ITEMS_PER_OFFER",
    "MAX_QUANTITY",
    "Offer",
    "Trade",
    "TradeBook",
    "TradeExchange",
    "TradeStatus",
    "Transfer",
    "unique_item_ids",
]

MAX_ITEMS_PER_OFFER = 32
MAX_QUANTITY = 1_000_000
MAX_GOLD = 2**53


class TradeStatus(StrEnum):
    REQUESTED = "requested"
    OPEN = "open"
    COMMITTING = "committing"
    COMPLETED = "completed"
    DECLINED = "declined"
    CANCELLED = "cancelled"


_FINAL = frozenset({TradeStatus.COMPLETED, TradeStatus.DECLINED, TradeStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class Offer:
    """One side's offer: ``(item_id, quantity)`` pairs sorted by id, and gold."""

    items: tuple[tuple[int, int], ...] = ()
    gold: int = 0

    @classmethod
    def of(cls, items: Iterable[tuple[int, int]], gold: int) -> Offer:
        """The offer of ``(item_id, quantity)`` pairs in any order, and ``gold``."""
        return cls(tuple(sorted(items)), gold)

    @property
    def item_ids(self) -> frozenset[int]:
        return frozenset(item_id for item_id, _ in self.items)

    def quantities(self) -> dict[int, int]:
        return dict(self.items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [{"item_id": i, "quantity": q} for i, q in self.items],
            "gold": self.gold,
        }


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move ``items`` (``(item_id, quantity)`` pairs) and ``gold`` between characters."""

    from_id: int
    to_id: int
    items: tuple[tuple[int, int], ...]
    gold: int

    @property
    def item_ids(self) -> tuple[int, ...]:
        return tuple(item_id for item_id, _ in self.items)


@dataclass(frozen=True, slots=True)
class TradeExchange:
    """What the storage layer applies atomically: both transfers or neither."""

    trade_id: str
    version: int
    transfers: tuple[Transfer, Transfer]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trade_id": self.trade_id,
            "version": self.version,
            "transfers": [
                {
                    "from_id": t.from_id,
                    "to_id": t.to_id,
                    "items": [{"item_id": i, "quantity": q} for i, q in t.items],
                    "gold": t.gold,
                }
                for t in self.transfers
            ],
        }


@dataclass
class Trade:
    """One trade between ``initiator_id`` and ``partner_id``. Start with :meth:`request`."""

    trade_id: str
    initiator_id: int
    partner_id: int
    created_at: float
    expires_at: float
    status: TradeStatus = TradeStatus.REQUESTED
    offers: dict[int, Offer] = field(default_factory=dict)
    confirmed: set[int] = field(default_factory=set)
    version: int = 0
    cancel_reason: str | None = None

    @classmethod
    def request(
        cls,
        trade_id: str,
        *,
        initiator_id: int,
        partner_id: int,
        now: float,
        rules: RulesDef,
    ) -> Trade:
        if initiator_id == partner_id:
            refuse(ErrorCode.TRADE_INVALID, "you cannot trade with yourself")
        return cls(
            trade_id=trade_id,
            initiator_id=initiator_id,
            partner_id=partner_id,
            created_at=now,
            expires_at=now + rules.trade_request_ttl_seconds,
            offers={initiator_id: Offer(), partner_id: Offer()},
        )

    # -- queries ---------------------------------------------------------------------------

    @property
    def participants(self) -> tuple[int, int]:
        return (self.initiator_id, self.partner_id)

    @property
    def finished(self) -> bool:
        return self.status in _FINAL

    def other(self, character_id: int) -> int:
        self._require_participant(character_id)
        return self.partner_id if character_id == self.initiator_id else self.initiator_id

    def changes_offer(
        self, actor_id: int, *, items: Iterable[int] | Mapping[int, int], gold: int
    ) -> bool:
        """True if offering ``items`` and ``gold`` would replace the actor's current offer.

        The lobby asks before it reads the actor's items and gold: re-sending the same
        offer (a confirmation usually does) needs no look-up.
        """
        self._require_participant(actor_id)
        return Offer.of(_quantities(items).items(), gold) != self.offers[actor_id]

    def offered_items(self) -> frozenset[int]:
        return self.offers[self.initiator_id].item_ids | self.offers[self.partner_id].item_ids

    def snapshot(self) -> dict[str, Any]:
        """The TRADE_UPDATE payload."""
        return {
            "trade_id": self.trade_id,
            "initiator_id": self.initiator_id,
            "partner_id": self.partner_id,
            "status": self.status.value,
            "version": self.version,
            "expires_at": self.expires_at if self.status is TradeStatus.REQUESTED else None,
            "offers": {str(cid): self.offers[cid].to_dict() for cid in self.participants},
            "confirmed": sorted(self.confirmed),
            "cancel_reason": self.cancel_reason,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to resume the trade elsewhere (JSON-ready)."""
        return {
            "trade_id": self.trade_id,
            "initiator_id": self.initiator_id,
            "partner_id": self.partner_id,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "status": self.status.value,
            "offers": {
                str(cid): {"items": [list(p) for p in o.items], "gold": o.gold}
                for cid, o in self.offers.items()
            },
            "confirmed": sorted(self.confirmed),
            "version": self.version,
            "cancel_reason": self.cancel_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trade:
        offers = {
            int(cid): Offer(tuple((int(i), int(q)) for i, q in o["items"]), int(o["gold"]))
            for cid, o in data["offers"].items()
        }
        return cls(
            trade_id=str(data["trade_id"]),
            initiator_id=int(data["initiator_id"]),
            partner_id=int(data["partner_id"]),
            created_at=float(data["created_at"]),
            expires_at=float(data["expires_at"]),
            status=TradeStatus(data["status"]),
            offers=offers,
            confirmed={int(c) for c in data["confirmed"]},
            version=int(data["version"]),
            cancel_reason=data.get("cancel_reason"),
        )

    # -- transitions -----------------------------------------------------------------------

    def accept(self, actor_id: int, *, now: float) -> None:
        self._require_requested_for_partner(actor_id, now)
        self.status = TradeStatus.OPEN

    def decline(self, actor_id: int, *, now: float) -> None:
        self._require_requested_for_partner(actor_id, now)
        self.status = TradeStatus.DECLINED

    def expire(self, now: float) -> bool:
        """Cancel a request nobody answered in time; True if it did."""
        if self.status is TradeStatus.REQUESTED and now >= self.expires_at:
            self._cancel("expired")
            return True
        return False

    def update_offer(
        self,
        actor_id: int,
        *,
        items: Iterable[int] | Mapping[int, int],
        gold: int,
        owned_items: Collection[int] | Mapping[int, int] | None = None,
        gold_available: int | None = None,
    ) -> bool:
        """Replace the actor's offer; True if it changed (and confirmations were cleared).

        ``items``: item ids (one of each) or ``{item_id: quantity}``. ``owned_items``
        and ``gold_available``, when given, are checked now (ids, or ``{id: quantity}``).
        """
        self._require_participant(actor_id)
        self._require_status(TradeStatus.OPEN)
        wanted = _quantities(items)
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold <= MAX_GOLD:
            refuse(ErrorCode.TRADE_INVALID, "gold must be a whole number >= 0", gold=gold)
        if set(wanted) & self.offers[self.other(actor_id)].item_ids:
            refuse(ErrorCode.TRADE_INVALID, "an item is in both offers")
        if owned_items is not None:
            have = (
                owned_items if isinstance(owned_items, Mapping) else dict.fromkeys(owned_items, 1)
            )
            missing = sorted(i for i, q in wanted.items() if have.get(i, 0) < q)
            if missing:
                refuse(ErrorCode.ITEM_NOT_OWNED, "you do not own those items", item_ids=missing)
        if gold_available is not None and gold > gold_available:
            refuse(
                ErrorCode.INSUFFICIENT_GOLD,
                f"you have {gold_available} gold, not {gold}",
                gold=gold,
                available=gold_available,
            )
        offer = Offer.of(wanted.items(), gold)
        if offer == self.offers[actor_id]:
            return False
        self.offers[actor_id] = offer
        self.confirmed.clear()
        self.version += 1
        return True

    def confirm(
        self,
        actor_id: int,
        *,
        version: int | None = None,
        seen: Iterable[tuple[int, Offer]] = (),
    ) -> TradeExchange | None:
        """Confirm the current offers; the second confirmation returns the exchange.

        ``version`` and ``seen`` (``(character_id, offer)`` pairs: the window as the
        actor saw it) are checked against the current offers: a difference refuses
        the confirmation (``TRADE_INVALID``), the actor reviews and confirms again.
        """
        self._require_participant(actor_id)
        self._require_status(TradeStatus.OPEN)
        stale = version is not None and version != self.version
        if stale or any(self.offers.get(cid) != offer for cid, offer in seen):
            refuse(
                ErrorCode.TRADE_INVALID,
                "the offers changed since you looked; review and confirm again",
                version=self.version,
            )
        if not (
            self.offers[self.initiator_id] != Offer() or self.offers[self.partner_id] != Offer()
        ):
            refuse(ErrorCode.TRADE_INVALID, "nothing is offered")
        self.confirmed.add(actor_id)
        if self.confirmed != set(self.participants):
            return None
        self.status = TradeStatus.COMMITTING
        return self.exchange()

    def exchange(self) -> TradeExchange:
        a, b = self.participants
        return TradeExchange(
            trade_id=self.trade_id,
            version=self.version,
            transfers=(
                Transfer(a, b, self.offers[a].items, self.offers[a].gold),
                Transfer(b, a, self.offers[b].items, self.offers[b].gold),
            ),
        )

    def committed(self) -> None:
        """The storage layer applied the exchange."""
        self._require_status(TradeStatus.COMMITTING)
        self.status = TradeStatus.COMPLETED

    def failed(self, reason: str) -> None:
        """The storage layer refused the exchange (ownership or gold changed)."""
        self._require_status(TradeStatus.COMMITTING)
        self._cancel(reason)

    def cancel(self, actor_id: int, *, reason: str = "cancelled") -> None:
        """Either side walks away (also on disconnect) before the commit."""
        self._require_participant(actor_id)
        if self.finished or self.status is TradeStatus.COMMITTING:
            refuse(
                ErrorCode.TRADE_INVALID,
                f"the trade is {self.status.value} and cannot be cancelled",
            )
        self._cancel(reason)

    # -- helpers ---------------------------------------------------------------------------

    def _cancel(self, reason: str) -> None:
        self.status = TradeStatus.CANCELLED
        self.cancel_reason = reason
        self.confirmed.clear()

    def _require_participant(self, character_id: int) -> None:
        if character_id not in self.participants:
            refuse(ErrorCode.FORBIDDEN, "you are not part of this trade", trade_id=self.trade_id)

    def _require_status(self, status: TradeStatus) -> None:
        if self.status is not status:
            refuse(
                ErrorCode.TRADE_INVALID,
                f"the trade is {self.status.value}, not {status.value}",
                status=self.status.value,
            )

    def _require_requested_for_partner(self, actor_id: int, now: float) -> None:
        self._require_participant(actor_id)
        if actor_id != self.partner_id:
            refuse(ErrorCode.TRADE_INVALID, "only the requested partner can answer")
        self._require_status(TradeStatus.REQUESTED)
        if self.expire(now):
            refuse(ErrorCode.TRADE_INVALID, "the trade request has expired")


def unique_item_ids(offered: Iterable[tuple[int, int]]) -> list[int]:
    """The ids of an offer of unique items given as ``(item_id, quantity)`` pairs.

    Each item is one instance: offered once, with quantity 1 (``TRADE_INVALID``
    otherwise).
    """
    ids = []
    for item_id, quantity in offered:
        if quantity != 1:
            refuse(
                ErrorCode.TRADE_INVALID,
                "items are unique: offer each with quantity 1",
                item_id=item_id,
            )
        ids.append(item_id)
    if len(set(ids)) != len(ids):
        refuse(ErrorCode.TRADE_INVALID, "an item is offered twice")
    return ids


def _quantities(items: Iterable[int] | Mapping[int, int]) -> dict[int, int]:
    wanted: dict[int, int]
    if isinstance(items, Mapping):
        wanted = {}
        for item_id, quantity in items.items():
            if isinstance(quantity, bool) or not isinstance(quantity, int):
                refuse(ErrorCode.TRADE_INVALID, "a quantity must be a whole number")
            if not 1 <= quantity <= MAX_QUANTITY:
                refuse(ErrorCode.TRADE_INVALID, f"quantity {quantity} outside 1..{MAX_QUANTITY}")
            wanted[item_id] = quantity
    else:
        ids = list(items)
        wanted = dict.fromkeys(ids, 1)
        if len(wanted) != len(ids):
            refuse(ErrorCode.TRADE_INVALID, "an item is offered twice")
    if len(wanted) > MAX_ITEMS_PER_OFFER:
        refuse(ErrorCode.TRADE_INVALID, f"at most {MAX_ITEMS_PER_OFFER} items per offer")
    return wanted


class TradeBook:
    """Every trade of one lobby, keeping each character in at most one unfinished trade.

    ``trade_id`` values are the caller's or ``"trade-<n>"`` from a counter. Finished
    trades stay readable through :meth:`get` until :meth:`prune`.
    """

    def __init__(self, rules: RulesDef) -> None:
        self.rules = rules
        self._trades: dict[str, Trade] = {}
        self._active: dict[int, str] = {}
        self._counter = 0

    def get(self, trade_id: str) -> Trade | None:
        return self._trades.get(trade_id)

    def active_for(self, character_id: int) -> Trade | None:
        trade_id = self._active.get(character_id)
        trade = None if trade_id is None else self._trades.get(trade_id)
        if trade is None or trade.finished:
            self._active.pop(character_id, None)
            return None
        return trade

    def request(
        self, initiator_id: int, partner_id: int, *, now: float, trade_id: str | None = None
    ) -> Trade:
        for cid in (initiator_id, partner_id):
            if self.active_for(cid) is not None:
                refuse(
                    ErrorCode.TRADE_INVALID,
                    f"character {cid} is already trading",
                    character_id=cid,
                )
        if trade_id is None:
            self._counter += 1
            trade_id = f"trade-{self._counter}"
            while trade_id in self._trades:
                self._counter += 1
                trade_id = f"trade-{self._counter}"
        elif trade_id in self._trades:
            refuse(ErrorCode.CONFLICT, f"trade id {trade_id!r} is taken")
        trade = Trade.request(
            trade_id, initiator_id=initiator_id, partner_id=partner_id, now=now, rules=self.rules
        )
        self._trades[trade_id] = trade
        self._active[initiator_id] = trade_id
        self._active[partner_id] = trade_id
        return trade

    def require(self, trade_id: str, character_id: int) -> Trade:
        """The trade, if ``character_id`` takes part in it (``NOT_FOUND`` otherwise)."""
        trade = self._trades.get(trade_id)
        if trade is None or character_id not in trade.participants:
            refuse(ErrorCode.NOT_FOUND, f"no trade {trade_id!r} of yours", trade_id=trade_id)
        return trade

    def cancel_for(self, character_id: int, *, reason: str = "disconnected") -> Trade | None:
        """Cancel the character's unfinished trade (on disconnect); return it, if any.

        A trade already committing is left to the storage layer's verdict.
        """
        trade = self.active_for(character_id)
        if trade is None or trade.status is TradeStatus.COMMITTING:
            return None
        trade.cancel(character_id, reason=reason)
        return trade

    def expire(self, now: float) -> list[Trade]:
        return [t for t in self._trades.values() if t.expire(now)]

    def prune(self) -> list[Trade]:
        """Forget finished trades; return them."""
        done = [t for t in self._trades.values() if t.finished]
        for trade in done:
            del self._trades[trade.trade_id]
            for cid in trade.participants:
                if self._active.get(cid) == trade.trade_id:
                    del self._active[cid]
        return done
