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
:class:`lobby.cluster_limits.RedisBuckets` (several lobby processes on one Redis: one
budget per key for the cluster, not one per process). Its ``hit`` is awaited;
:func:`hit_each` charges several limiters at once (one Redis round trip). Every
budget of a client, account or address is one: chat, relay, REST per address and per
account, WebSocket messages per account and per address, whisper pairings and ICE
requests. What stays per process is per process by nature: a WebSocket connection's
own budget (it lives on one process), the STUN responder's per-source bound (it
protects that process's UDP socket), the per-address connection cap (a count of
this process's sockets) and the guard's log lines.

Memory is bounded: each structure keeps at most ``max_keys`` keys and evicts the
least recently used one beyond that (an attacker rotating addresses can only
make the lobby forget old buckets, never grow it).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from lobby.config import Clock

__all__ = [
    "BucketStore",
    "FallbackThrottleStore",
    "LoginAttempt",
    "LoginPolicy",
    "LoginRefusal",
    "LoginThrottle",
    "MemoryBuckets",
    "MemoryThrottleStore",
    "RateLimiter",
    "SharedRateLimiter",
    "ThrottleStore",
    "hit_each",
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

    async def take_each(self, takes: Sequence[BucketTake], now: float) -> float:
        """:meth:`take` from each ``(key, cost, rate, burst)`` bucket, each on its own (one
        with tokens pays even when another has none); the longest wait (0.0: all took)."""


BucketTake = tuple[str, float, float, float]
"""``(key, cost, rate, burst)``: one bucket's charge in :meth:`BucketStore.take_each`."""


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

    async def take_each(self, takes: Sequence[BucketTake], now: float) -> float:
        waits = [await self.take(key, cost, rate, burst, now) for key, cost, rate, burst in takes]
        return max(waits, default=0.0)


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

    def reset(self, key: Hashable) -> None:
        """Forget ``key``'s bucket of this process (a shared one expires by itself)."""
        self._local.reset(key)


async def hit_each(hits: Sequence[tuple[SharedRateLimiter, Hashable]], cost: float = 1.0) -> float:
    """Take ``cost`` from each ``(limiter, key)`` (each on its own, like separate ``hit``
    calls) in one round trip to their shared store; the longest wait (0.0: all allowed)."""
    if not hits:
        return 0.0
    store = hits[0][0]._store
    if store is None or any(limiter._store is not store for limiter, _ in hits):
        return max([await limiter.hit(key, cost) for limiter, key in hits])
    takes = [(f"{lim.name}:{key}", cost, lim.rate, lim.burst) for lim, key in hits]
    try:
        return await store.take_each(takes, hits[0][0]._clock())
    except Exception as exc:
        names = ", ".join(limiter.name for limiter, _ in hits)
        log.warning("shared %s budgets unavailable (%s); using this process's", names, exc)
        return max(limiter._local.hit(key, cost) for limiter, key in hits)


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
    reserved: tuple[tuple[str, str], ...] = ()
    """(budget key, charge) pairs taken from the store for this attempt."""


class ThrottleStore(Protocol):
    """Where :class:`LoginThrottle` keeps its state: this process's memory
    (:class:`MemoryThrottleStore`) or Redis (:class:`lobby.cluster_limits.RedisThrottleStore`, one
    budget for every lobby process). Keys are strings; times come from the caller's clock."""

    async def reserve(self, key: str, limit: int, window: float, now: float) -> tuple[float, str]:
        """Charge the sliding log ``key`` at ``now`` if it holds fewer than ``limit`` charges
        younger than ``window``: ``(0.0, charge id)``; else ``(seconds until room, "")``."""

    async def unreserve(self, key: str, charge: str) -> None:
        """Take back one charge of :meth:`reserve` (no-op if gone)."""

    async def record(self, key: str, window: float, now: float) -> int:
        """Charge the log ``key`` at ``now`` unconditionally; return its charges in ``window``."""

    async def clear(self, key: str) -> None:
        """Forget the log ``key``."""

    async def lock(self, key: str, until: float, now: float) -> None:
        """Lock ``key`` from ``now`` until the time ``until``."""

    async def locked_until(self, key: str, now: float) -> float:
        """When the lock on ``key`` ends (0.0 if it is not locked at ``now``)."""

    async def remember(self, key: str, member: str, keep: int, now: float) -> None:
        """Add ``member`` to the recency set ``key`` (most recent last), keeping ``keep``."""

    async def knows(self, key: str, member: str) -> bool:
        """Is ``member`` in the recency set ``key``?"""


class MemoryThrottleStore:
    """:class:`ThrottleStore` in this process's memory, bounded: at most ``max_keys`` logs,
    locks and sets each, the least recently used forgotten first."""

    def __init__(self, *, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        self._logs: OrderedDict[str, deque[tuple[float, str]]] = OrderedDict()
        self._locks: OrderedDict[str, float] = OrderedDict()
        self._sets: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()
        self._charges = 0

    async def reserve(self, key: str, limit: int, window: float, now: float) -> tuple[float, str]:
        log = self._log(key, now, window)
        if len(log) >= limit:
            return max(0.0, log[0][0] + window - now), ""
        self._charges += 1
        charge = str(self._charges)
        log.append((now, charge))
        return 0.0, charge

    async def unreserve(self, key: str, charge: str) -> None:
        log = self._logs.get(key)
        if log is not None:
            for entry in log:
                if entry[1] == charge:
                    log.remove(entry)
                    break

    async def record(self, key: str, window: float, now: float) -> int:
        log = self._log(key, now, window)
        self._charges += 1
        log.append((now, str(self._charges)))
        return len(log)

    async def clear(self, key: str) -> None:
        self._logs.pop(key, None)

    async def lock(self, key: str, until: float, now: float) -> None:
        del now
        self._locks.pop(key, None)
        self._locks[key] = until
        _trim(self._locks, self._max_keys)

    async def locked_until(self, key: str, now: float) -> float:
        until = self._locks.get(key)
        if until is None:
            return 0.0
        if until <= now:
            del self._locks[key]
            return 0.0
        return until

    async def remember(self, key: str, member: str, keep: int, now: float) -> None:
        members = self._sets.pop(key, None) or OrderedDict()
        members.pop(member, None)
        members[member] = None
        while len(members) > keep:
            members.popitem(last=False)
        self._sets[key] = members
        _trim(self._sets, self._max_keys)

    async def knows(self, key: str, member: str) -> bool:
        members = self._sets.get(key)
        return members is not None and member in members

    def tracked(self) -> int:
        """The most keys any of its tables holds (each is bounded by ``max_keys``)."""
        return max(len(self._logs), len(self._locks), len(self._sets))

    def _log(self, key: str, now: float, window: float) -> deque[tuple[float, str]]:
        log = self._logs.get(key)
        if log is None:
            log = deque()
            self._logs[key] = log
            _trim(self._logs, self._max_keys)
        else:
            self._logs.move_to_end(key)
        while log and now - log[0][0] >= window:
            log.popleft()
        return log


class FallbackThrottleStore:
    """A shared :class:`ThrottleStore` that, while it fails (Redis unreachable), lets a store
    of this process stand in, so logins keep a budget rather than failing or going unchecked."""

    def __init__(self, shared: ThrottleStore, local: ThrottleStore) -> None:
        self.shared = shared
        self.local = local
        self.failures = 0

    async def reserve(self, key: str, limit: int, window: float, now: float) -> tuple[float, str]:
        try:
            return await self.shared.reserve(key, limit, window, now)
        except Exception as exc:
            self._failed(exc)
            return await self.local.reserve(key, limit, window, now)

    async def unreserve(self, key: str, charge: str) -> None:
        try:
            await self.shared.unreserve(key, charge)
        except Exception as exc:
            self._failed(exc)
        await self.local.unreserve(key, charge)

    async def record(self, key: str, window: float, now: float) -> int:
        try:
            return await self.shared.record(key, window, now)
        except Exception as exc:
            self._failed(exc)
            return await self.local.record(key, window, now)

    async def clear(self, key: str) -> None:
        try:
            await self.shared.clear(key)
        except Exception as exc:
            self._failed(exc)
        await self.local.clear(key)

    async def lock(self, key: str, until: float, now: float) -> None:
        try:
            await self.shared.lock(key, until, now)
        except Exception as exc:
            self._failed(exc)
            await self.local.lock(key, until, now)

    async def locked_until(self, key: str, now: float) -> float:
        local = await self.local.locked_until(key, now)
        try:
            return max(local, await self.shared.locked_until(key, now))
        except Exception as exc:
            self._failed(exc)
            return local

    async def remember(self, key: str, member: str, keep: int, now: float) -> None:
        await self.local.remember(key, member, keep, now)
        try:
            await self.shared.remember(key, member, keep, now)
        except Exception as exc:
            self._failed(exc)

    async def knows(self, key: str, member: str) -> bool:
        try:
            return await self.shared.knows(key, member)
        except Exception as exc:
            self._failed(exc)
            return await self.local.knows(key, member)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.failures % 100 == 1:
            log.warning("shared login throttle unavailable (%s); this process's stands in", exc)


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
    cannot overrun it; a success refunds its reservation. The state lives in
    ``store``: this process's memory by default (bounded: at most ``max_keys``
    accounts, addresses and pairs each), or Redis shared by every lobby process, so
    that N processes give one budget, not N.
    """

    HOUR = 3600.0

    def __init__(
        self,
        policy: LoginPolicy,
        clock: Clock,
        *,
        max_keys: int = 100_000,
        store: ThrottleStore | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self.store: ThrottleStore = store or MemoryThrottleStore(max_keys=max_keys)

    # -- the three steps of a login -------------------------------------------------------

    async def admit(self, account: Hashable, address: str) -> LoginAttempt | LoginRefusal:
        """May ``address`` try a password for ``account`` now? Reserves the budget if so."""
        now = self._clock()
        store, policy = self.store, self.policy
        until = await store.locked_until(_pair(account, address), now)
        if until > now:
            return LoginRefusal(until - now, "address_locked")
        known = await self.is_known(account, address)
        limit = policy.account_failures_per_hour
        if known:
            key = f"acct-known:{account}"
            wait, charge = await store.reserve(key, limit, self.HOUR, now)
            if wait > 0:
                return LoginRefusal(wait, "account_throttled")
            return LoginAttempt(account, address, now, known, ((key, charge),))
        key = f"acct:{account}"
        wait, charge = await store.reserve(key, limit, self.HOUR, now)
        if wait > 0:
            return LoginRefusal(wait, "account_throttled")
        by_address = f"addr:{address}"
        wait, address_charge = await store.reserve(
            by_address, policy.address_failures_per_hour, self.HOUR, now
        )
        if wait > 0:
            await store.unreserve(key, charge)
            return LoginRefusal(wait, "address_throttled")
        return LoginAttempt(
            account, address, now, known, ((key, charge), (by_address, address_charge))
        )

    async def failed(self, attempt: LoginAttempt) -> float:
        """The password was wrong: the reservation stands. Returns the pair's lock
        duration if this failure locked ``attempt.address`` out of the account."""
        now = self._clock()
        pair = _pair(attempt.account, attempt.address)
        failures = await self.store.record(f"fail:{pair}", self.policy.pair_window, now)
        if failures >= self.policy.pair_failures:
            await self.store.lock(pair, now + self.policy.pair_lockout, now)
            await self.store.clear(f"fail:{pair}")
            return self.policy.pair_lockout
        return 0.0

    async def succeeded(self, attempt: LoginAttempt) -> None:
        """The password was right: refund the reservation, clear the pair's failures
        and remember the address as known-good for the account."""
        await self.release(attempt)
        await self.store.clear(f"fail:{_pair(attempt.account, attempt.address)}")
        await self.remember(attempt.account, attempt.address)

    async def release(self, attempt: LoginAttempt) -> None:
        """The attempt ended without a verdict on the password (an error): refund it."""
        for key, charge in attempt.reserved:
            await self.store.unreserve(key, charge)

    # -- known-good addresses -----------------------------------------------------------

    async def remember(self, account: Hashable, address: str) -> None:
        """``address`` proved it holds the password of ``account`` (login, registration)."""
        await self.store.remember(
            f"known:{account}", address, self.policy.known_addresses, self._clock()
        )

    async def is_known(self, account: Hashable, address: str) -> bool:
        return await self.store.knows(f"known:{account}", address)


def _pair(account: Hashable, address: str) -> str:
    return f"pair:{account}|{address}"


def retry_after_header(seconds: float) -> str:
    """The ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def _trim(d: OrderedDict[_K, _V], max_keys: int) -> None:
    while len(d) > max_keys:
        d.popitem(last=False)
