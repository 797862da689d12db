"""Rate limits and login lockout, driven by the injectable clock.

:class:`RateLimiter` is a token bucket per key (an account id, a source
address, ...): ``rate`` tokens per second up to ``burst``. :meth:`RateLimiter.hit`
takes one token and returns 0.0, or the seconds until one will be available
(the ``Retry-After`` / ``retry_after`` hint), taking nothing.

:class:`Lockout` counts failures per key inside a sliding window; reaching the
limit locks the key for ``lockout`` seconds (login: per account and per source
address).

Memory is bounded: each structure keeps at most ``max_keys`` keys and evicts the
least recently used one beyond that (an attacker rotating addresses can only
make the lobby forget old buckets, never grow it).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import TypeVar

from lobby.config import Clock

__all__ = ["Lockout", "RateLimiter", "retry_after_header"]

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


class Lockout:
    """Failure counting with a lock once ``max_failures`` happen within ``window`` seconds."""

    def __init__(
        self,
        max_failures: int,
        window: float,
        lockout: float,
        clock: Clock,
        *,
        max_keys: int = 100_000,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[Hashable, deque[float]] = OrderedDict()
        self._locked_until: OrderedDict[Hashable, float] = OrderedDict()

    def locked_for(self, key: Hashable) -> float:
        """Seconds ``key`` stays locked (0.0 if it is not locked)."""
        until = self._locked_until.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._locked_until[key]
            return 0.0
        return left

    def record_failure(self, key: Hashable) -> float:
        """Count a failure; return the lock duration if this failure locked ``key``."""
        now = self._clock()
        failures = self._failures.pop(key, None) or deque(maxlen=self.max_failures)
        while failures and now - failures[0] > self.window:
            failures.popleft()
        failures.append(now)
        if len(failures) >= self.max_failures:
            self._locked_until[key] = now + self.lockout
            self._locked_until.move_to_end(key)
            _trim(self._locked_until, self._max_keys)
            return self.lockout
        self._failures[key] = failures
        _trim(self._failures, self._max_keys)
        return 0.0

    def reset(self, key: Hashable) -> None:
        """Forget the failures of ``key`` (after a successful login)."""
        self._failures.pop(key, None)


def retry_after_header(seconds: float) -> str:
    """The ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def _trim(d: OrderedDict[Hashable, _V], max_keys: int) -> None:
    while len(d) > max_keys:
        d.popitem(last=False)
