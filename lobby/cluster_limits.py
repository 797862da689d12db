"""Rate-limit budgets in Redis: one budget per key for every lobby process of a cluster.

* :class:`RedisBuckets` keeps the token buckets of :class:`lobby.ratelimit.SharedRateLimiter`
  (chat, relay), each updated atomically by a Lua script;
* :class:`RedisThrottleStore` keeps the login throttle's sliding logs, lockouts and
  known-good addresses (:class:`lobby.ratelimit.ThrottleStore`).

Times come from the caller's clock; every key expires by itself once it no longer matters.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from lobby.cluster_wire import CommandLink, RespError, command

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from lobby.ratelimit import BucketTake

__all__ = ["RedisBuckets", "RedisThrottleStore"]


# Token bucket, atomically: refill by elapsed time (the stamp never moves back, so clock
# skew between processes cannot mint tokens), take ``cost`` or say how long to wait.
_BUCKET_LUA = """
local cost, rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
    tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 't', 's')
local tokens, stamp = tonumber(v[1]), tonumber(v[2])
if tokens == nil then tokens = burst; stamp = now end
if now > stamp then
    tokens = math.min(burst, tokens + (now - stamp) * rate); stamp = now
end
local wait = 0
if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(stamp))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


# The same, for several buckets at once (KEYS[i] with ARGV cost_i, rate_i, burst_i, ...,
# now last): each takes or not on its own; the longest wait.
_BUCKETS_LUA = """
local now = tonumber(ARGV[#ARGV])
local longest = 0
for i, key in ipairs(KEYS) do
    local cost, rate, burst = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]),
        tonumber(ARGV[3 * i])
    local v = redis.call('HMGET', key, 't', 's')
    local tokens, stamp = tonumber(v[1]), tonumber(v[2])
    if tokens == nil then tokens = burst; stamp = now end
    if now > stamp then
        tokens = math.min(burst, tokens + (now - stamp) * rate); stamp = now
    end
    if tokens >= cost then tokens = tokens - cost
    else longest = math.max(longest, (cost - tokens) / rate) end
    redis.call('HSET', key, 't', tostring(tokens), 's', tostring(stamp))
    redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
return tostring(longest)
"""


class RedisBuckets:
    """Token buckets in Redis (:class:`lobby.ratelimit.BucketStore`): one budget per key
    for the whole cluster. With ``link`` (the broker's :class:`~lobby.cluster_wire.CommandLink`)
    the scripts run over it, without a pool checkout per message; else through ``client``."""

    def __init__(
        self, client: aioredis.Redis, prefix: str, link: CommandLink | None = None
    ) -> None:
        self._redis = client
        self._prefix = f"{prefix}:bucket:"
        self._link = link
        self._script: Callable[..., Awaitable[Any]] = client.register_script(_BUCKET_LUA)
        self._many: Callable[..., Awaitable[Any]] = client.register_script(_BUCKETS_LUA)

    async def take(self, key: str, cost: float, rate: float, burst: float, now: float) -> float:
        keys = [self._prefix + key]
        args = [repr(cost), repr(rate), repr(burst), repr(now)]
        if self._link is not None:
            return float(await _run(self._link, _BUCKET_LUA, keys, args))
        return float(await self._script(keys=keys, args=args))

    async def take_each(self, takes: Sequence[BucketTake], now: float) -> float:
        args: list[str] = []
        for _key, cost, rate, burst in takes:
            args += (repr(cost), repr(rate), repr(burst))
        keys = [self._prefix + key for key, *_ in takes]
        if self._link is not None:
            return float(await _run(self._link, _BUCKETS_LUA, keys, [*args, repr(now)]))
        return float(await self._many(keys=keys, args=[*args, repr(now)]))


async def _run(link: CommandLink, script: str, keys: list[str], args: list[str]) -> Any:
    """``script`` by its digest over ``link`` (loaded with EVAL when Redis lacks it)."""
    (reply,) = await link.execute([command("EVALSHA", _sha(script), str(len(keys)), *keys, *args)])
    if isinstance(reply, RespError) and str(reply).startswith("NOSCRIPT"):
        (reply,) = await link.execute([command("EVAL", script, str(len(keys)), *keys, *args)])
    if isinstance(reply, RespError):
        raise reply
    return reply


@functools.cache
def _sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


# A sliding log of charges (a sorted set scored by time): drop the old ones, then charge
# if there is room (ARGV[4] = 1) or unconditionally (0). Returns {wait, charge, count}.
_LOG_LUA = """
local window, now, limit, bounded = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
    tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if bounded == 1 and n >= limit then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {tostring(tonumber(oldest[2]) + window - now), '', n}
end
local charge = tostring(redis.call('INCR', KEYS[2]))
redis.call('ZADD', KEYS[1], now, charge)
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
return {'0', charge, n + 1}
"""

# A recency set: the member scored by a sequence number (not the clock: two at the same
# time keep their order), only the last ARGV[2] kept.
_REMEMBER_LUA = """
local seq = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], seq, ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_KNOWN_FOR = 90 * 86400
"""Seconds a known-good address set lives in Redis after its last change."""


class RedisThrottleStore:
    """The login throttle's state in Redis (:class:`lobby.ratelimit.ThrottleStore`): one
    budget per account, address and pair for every lobby process."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = f"{prefix}:login:"
        self._seq = f"{prefix}:login-seq"
        self._log: Callable[..., Awaitable[Any]] = client.register_script(_LOG_LUA)
        self._remember: Callable[..., Awaitable[Any]] = client.register_script(_REMEMBER_LUA)

    async def reserve(self, key: str, limit: int, window: float, now: float) -> tuple[float, str]:
        wait, charge, _count = await self._log(
            keys=[self._prefix + key, self._seq], args=[repr(window), repr(now), limit, 1]
        )
        return float(wait), str(charge)

    async def unreserve(self, key: str, charge: str) -> None:
        await self._redis.zrem(self._prefix + key, charge)

    async def record(self, key: str, window: float, now: float) -> int:
        _wait, _charge, count = await self._log(
            keys=[self._prefix + key, self._seq], args=[repr(window), repr(now), 0, 0]
        )
        return int(count)

    async def clear(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)

    async def lock(self, key: str, until: float, now: float) -> None:
        ttl = max(1, int((until - now) * 1000))
        await self._redis.set(self._prefix + key, repr(until), px=ttl)

    async def locked_until(self, key: str, now: float) -> float:
        value = await self._redis.get(self._prefix + key)
        until = float(value) if value is not None else 0.0
        return until if until > now else 0.0

    async def remember(self, key: str, member: str, keep: int, now: float) -> None:
        del now
        await self._remember(keys=[self._prefix + key, self._seq], args=[member, keep, _KNOWN_FOR])

    async def knows(self, key: str, member: str) -> bool:
        return await self._redis.zscore(self._prefix + key, member) is not None
