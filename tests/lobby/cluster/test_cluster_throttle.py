"""The login throttle with its state in Redis: the same policy, one budget for the cluster."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from lobby.cluster_limits import RedisThrottleStore
from lobby.ratelimit import LoginThrottle
from tests.lobby.cluster.procs import RedisServer
from tests.lobby.support import FakeClock

# The policy's own tests, run here against the Redis store (the ``throttle`` fixture below).
from tests.lobby.test_login_throttle import (  # noqa: F401
    POLICY,
    test_a_spraying_address_keeps_only_its_known_accounts,
    test_an_attacker_locks_only_his_own_address_out,
    test_five_tries_every_five_minutes_never_keep_the_owner_out,
    test_guessing_from_many_addresses_is_bounded_per_account_per_hour,
    test_known_addresses_have_a_bounded_budget_too,
    test_successes_and_errors_refund_their_reservation,
)

_prefixes = itertools.count()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture
async def throttle(redis_server: RedisServer, clock: FakeClock) -> AsyncIterator[LoginThrottle]:
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        store = RedisThrottleStore(client, f"t{next(_prefixes)}")
        yield LoginThrottle(POLICY, clock, store=store)
    finally:
        await client.aclose()
