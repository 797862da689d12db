"""Rate limits and login lockout, driven by the injectable clock.

:class:`RateLimiter` is a token bucket per key (an account id, a source
address, ...): ``rate`` tokens per second up to ``burst``. :meth:`RateLimiter.hit`
takes one token and returns 0.0, or the seconds until one will be available
(the ``Retry-After`` / ``retry_after`` hint), taking nothing.

:class:`LoginThrottle` bounds password guessing per account, per address and per
(account, address) pair without ever locking an account against its owner (its
docstring states the policy).

:class:`SharedRateLimiter` is the same bucket with its state in a
:class:`BucketStore`: :class:`MemoryBuckets` (one process) or
:class:`lobby.cluster.RedisBuckets` (several lobby processes on one Redis: one
budget per key for the cluster, not one per process). Its ``hit`` is awaited.

Memory is bounded: each structure keeps at most ``max_keys`` keys and evicts the
least recently used one beyond that (an attacker rotating addresses can only
make the lobby forget old buckets, never grow it).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from lobby.config import Clock

__all__ = [
    "BucketStore",
    "LoginAttempt",
    "LoginPolicy",
    "LoginRefusal",
    "LoginThrottle",
    "MemoryBuckets",
    "RateLimiter",
    "SharedRateLimiter",
    "retry_after_header",
]

log = logging.getLogger("lobby.ratelimit")

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class RateLimiter:
    """Token buckets keyed by any hashable value."""

    def __init__(self, rate: float, burst: float, clock: Clock, *, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def hit(self, key: Hashable, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 if allowed, else seconds to wait."""
        now = self._clock()
        buckets = self._buckets
        entry = buckets.get(key)
        if entry is None:
            tokens = self.burst
        else:
            tokens, stamp = entry
            if now > stamp:
                tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            buckets.move_to_end(key)
        if tokens >= cost:
            buckets[key] = (tokens - cost, now)
            wait = 0.0
        else:
            buckets[key] = (tokens, now)
            wait = (cost - tokens) / self.rate
        if entry is None and len(buckets) > self._max_keys:
            _trim(buckets, self._max_keys)
        return wait

    def reset(self, key: Hashable) -> None:
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)


class BucketStore(Protocol):
    """Where :class:`SharedRateLimiter` keeps its token buckets."""

    async def take(self, key: str, cost: float, rate: float, burst: float, now: float) -> float:
        """Take ``cost`` tokens from bucket ``key`` (``rate``/s up to ``burst``, full when
        new) at time ``now``: 0.0 if taken, else the seconds until they will be there."""


class MemoryBuckets:
    """Token buckets in this process's memory (bounded like :class:`RateLimiter`)."""

    def __init__(self, *, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        self._limiters: dict[tuple[float, float], RateLimiter] = {}
        self._now = 0.0

    async def take(self, key: str, cost: float, rate: float, burst: float, now: float) -> float:
        limiter = self._limiters.get((rate, burst))
        if limiter is None:
            limiter = RateLimiter(rate, burst, lambda: self._now, max_keys=self._max_keys)
            self._limiters[(rate, burst)] = limiter
        self._now = now
        return limiter.hit(key, cost)


class SharedRateLimiter:
    """A :class:`RateLimiter` whose buckets live in a :class:`BucketStore`.

    ``name`` keeps limiters apart in a shared store (``chat``, ``relay``). If the
    store fails (Redis unreachable), the limiter falls back to a bucket of this
    process alone rather than refusing everyone or letting everything through.
    """

    def __init__(
        self, name: str, rate: float, burst: float, clock: Clock, store: BucketStore | None = None
    ) -> None:
        self.name = name
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._store = store
        self._local = RateLimiter(rate, burst, clock)

    async def hit(self, key: Hashable, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 if allowed, else seconds to wait."""
        if self._store is None:
            return self._local.hit(key, cost)
        try:
            return await self._store.take(
                f"{self.name}:{key}", cost, self.rate, self.burst, self._clock()
            )
        except Exception as exc:
            log.warning("shared %s budget unavailable (%s); using this process's", self.name, exc)
            return self._local.hit(key, cost)


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """The limits of :class:`LoginThrottle` (from the ``login_*`` settings)."""

    pair_failures: int = 5
    """Failed logins to one account from one address within ``pair_window``..."""
    pair_window: float = 300.0
    pair_lockout: float = 300.0
    """... lock that address (only) out of that account for this long."""
    account_failures_per_hour: int = 30
    """Failed logins per hour to one account from addresses unknown to it; addresses
    known to it have a budget of their own of the same size."""
    address_failures_per_hour: int = 50
    """Failed logins per hour from one address over all accounts, beyond which it may
    only try accounts it is known to."""
    known_addresses: int = 8
    """Addresses remembered per account as known-good (most recent successes)."""

    def __post_init__(self) -> None:
        if min(self.pair_failures, self.account_failures_per_hour) < 1:
            raise ValueError("login failure limits must be >= 1")
        if min(self.address_failures_per_hour, self.known_addresses) < 1:
            raise ValueError("login failure limits must be >= 1")
        if self.pair_window <= 0 or self.pair_lockout <= 0:
            raise ValueError("login windows must be > 0")


RefusalReason = Literal["address_locked", "account_throttled", "address_throttled"]


@dataclass(frozen=True, slots=True)
class LoginRefusal:
    """An attempt refused before any password check: wait ``retry_after`` seconds."""

    retry_after: float
    reason: RefusalReason


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """An admitted attempt: its budget is reserved until :meth:`LoginThrottle.failed`,
    :meth:`LoginThrottle.succeeded` or :meth:`LoginThrottle.release` settles it."""

    account: Hashable
    address: str
    at: float
    known: bool


class LoginThrottle:
    """Bounds password guessing without handing anyone a lock on someone else's account.

    Every failed login is charged to three budgets:

    * the (account, address) pair: ``pair_failures`` within ``pair_window`` lock that
      address out of that account for ``pair_lockout``; every other address still
      gets in, so an attacker locks only himself out;
    * the account, per hour: at most ``account_failures_per_hour`` from addresses that
      never logged in to it, and as many again from addresses that did (known-good,
      the last ``known_addresses`` that succeeded, or registered it). When the first
      budget is spent, unknown addresses are refused until it frees up; the owner's
      known addresses are not, so a guesser slows the account down for strangers
      but never keeps its owner out;
    * the address, per hour, over all accounts (``address_failures_per_hour``):
      beyond it the address may only try accounts it is known to, so one spraying
      client behind a NAT does not shut out the others' logins.

    Guessing is thus bounded: an account sees at most ``2 * account_failures_per_hour``
    wrong passwords an hour, whatever the number of addresses. :meth:`admit`
    reserves the budget before the (slow) password check, so concurrent attempts
    cannot overrun it; a success refunds its reservation. State is in memory, per
    lobby process, bounded: at most ``max_keys`` accounts, addresses and pairs each
    (least recently used forgotten first).
    """

    HOUR = 3600.0

    def __init__(self, policy: LoginPolicy, clock: Clock, *, max_keys: int = 100_000) -> None:
        self.policy = policy
        self._clock = clock
        self._max_keys = max_keys
        self._pair_failures: OrderedDict[tuple[Hashable, str], deque[float]] = OrderedDict()
        self._pair_locked: OrderedDict[tuple[Hashable, str], float] = OrderedDict()
        # account -> (failures from unknown addresses, failures from known ones), last hour
        self._account: OrderedDict[Hashable, tuple[deque[float], deque[float]]] = OrderedDict()
        self._address: OrderedDict[str, deque[float]] = OrderedDict()
        self._known: OrderedDict[Hashable, OrderedDict[str, None]] = OrderedDict()

    # -- the three steps of a login -------------------------------------------------------

    def admit(self, account: Hashable, address: str) -> LoginAttempt | LoginRefusal:
        """May ``address`` try a password for ``account`` now? Reserves the budget if so."""
        now = self._clock()
        pair = (account, address)
        until = self._pair_locked.get(pair)
        if until is not None:
            if until > now:
                return LoginRefusal(until - now, "address_locked")
            del self._pair_locked[pair]
        known = self.is_known(account, address)
        unknown_budget, known_budget = self._account_budgets(account)
        if known:
            wait = _spent_for(known_budget, now, self.HOUR)
            if wait > 0:
                return LoginRefusal(wait, "account_throttled")
            known_budget.append(now)
        else:
            wait = _spent_for(unknown_budget, now, self.HOUR)
            if wait > 0:
                return LoginRefusal(wait, "account_throttled")
            by_address = self._address_budget(address)
            wait = _spent_for(by_address, now, self.HOUR)
            if wait > 0:
                return LoginRefusal(wait, "address_throttled")
            unknown_budget.append(now)
            by_address.append(now)
        return LoginAttempt(account, address, now, known)

    def failed(self, attempt: LoginAttempt) -> float:
        """The password was wrong: the reservation stands. Returns the pair's lock
        duration if this failure locked ``attempt.address`` out of the account."""
        now = self._clock()
        pair = (attempt.account, attempt.address)
        failures = self._pair_failures.pop(pair, None) or deque(maxlen=self.policy.pair_failures)
        while failures and now - failures[0] >= self.policy.pair_window:
            failures.popleft()
        failures.append(now)
        if len(failures) >= self.policy.pair_failures:
            self._pair_locked[pair] = now + self.policy.pair_lockout
            self._pair_locked.move_to_end(pair)
            _trim(self._pair_locked, self._max_keys)
            return self.policy.pair_lockout
        self._pair_failures[pair] = failures
        _trim(self._pair_failures, self._max_keys)
        return 0.0

    def succeeded(self, attempt: LoginAttempt) -> None:
        """The password was right: refund the reservation, clear the pair's failures
        and remember the address as known-good for the account."""
        self.release(attempt)
        self._pair_failures.pop((attempt.account, attempt.address), None)
        self.remember(attempt.account, attempt.address)

    def release(self, attempt: LoginAttempt) -> None:
        """The attempt ended without a verdict on the password (an error): refund it."""
        budgets = self._account.get(attempt.account)
        if budgets is not None:
            _discard(budgets[1] if attempt.known else budgets[0], attempt.at)
        if not attempt.known:
            by_address = self._address.get(attempt.address)
            if by_address is not None:
                _discard(by_address, attempt.at)

    # -- known-good addresses -----------------------------------------------------------

    def remember(self, account: Hashable, address: str) -> None:
        """``address`` proved it holds the password of ``account`` (login, registration)."""
        known = self._known.pop(account, None) or OrderedDict()
        known.pop(address, None)
        known[address] = None
        while len(known) > self.policy.known_addresses:
            known.popitem(last=False)
        self._known[account] = known
        _trim(self._known, self._max_keys)

    def is_known(self, account: Hashable, address: str) -> bool:
        known = self._known.get(account)
        return known is not None and address in known

    def tracked(self) -> int:
        """The most keys any of its tables holds (each is bounded by ``max_keys``)."""
        tables: tuple[OrderedDict[Any, Any], ...] = (
            self._pair_failures,
            self._pair_locked,
            self._account,
            self._address,
            self._known,
        )
        return max(len(t) for t in tables)

    # -- internals ----------------------------------------------------------------------

    def _account_budgets(self, account: Hashable) -> tuple[deque[float], deque[float]]:
        budgets = self._account.get(account)
        if budgets is None:
            size = self.policy.account_failures_per_hour
            budgets = (deque(maxlen=size), deque(maxlen=size))
            self._account[account] = budgets
            _trim(self._account, self._max_keys)
        else:
            self._account.move_to_end(account)
        return budgets

    def _address_budget(self, address: str) -> deque[float]:
        budget = self._address.get(address)
        if budget is None:
            budget = deque(maxlen=self.policy.address_failures_per_hour)
            self._address[address] = budget
            _trim(self._address, self._max_keys)
        else:
            self._address.move_to_end(address)
        return budget


def _spent_for(budget: deque[float], now: float, window: float) -> float:
    """Seconds until ``budget`` (a full-size deque of charge times) has room; 0.0 if it has."""
    maxlen = budget.maxlen
    if maxlen is None or len(budget) < maxlen:
        return 0.0
    return max(0.0, budget[0] + window - now)


def _discard(budget: deque[float], at: float) -> None:
    with contextlib.suppress(ValueError):
        budget.remove(at)


def retry_after_header(seconds: float) -> str:
    """The ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def _trim(d: OrderedDict[_K, _V], max_keys: int) -> None:
    while len(d) > max_keys:
        d.popitem(last=False)
