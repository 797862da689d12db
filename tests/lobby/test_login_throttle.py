"""The login throttle's policy, on a fake clock: nobody can keep an owner out, and
guessing stays bounded per account per hour whatever the number of addresses."""

from __future__ import annotations

import pytest

from lobby.ratelimit import (
    LoginAttempt,
    LoginPolicy,
    LoginRefusal,
    LoginThrottle,
    MemoryThrottleStore,
)
from tests.lobby.support import FakeClock

POLICY = LoginPolicy(
    pair_failures=5,
    pair_window=300.0,
    pair_lockout=300.0,
    account_failures_per_hour=30,
    address_failures_per_hour=50,
    known_addresses=3,
)
HOUR = 3600.0
OWNER_HOME = "198.51.100.2"
ATTACKER = "203.0.113.7"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture
def throttle(clock: FakeClock) -> LoginThrottle:
    return LoginThrottle(POLICY, clock)


async def guess(throttle: LoginThrottle, account: str, address: str) -> LoginAttempt | LoginRefusal:
    """One wrong password, if admitted."""
    attempt = await throttle.admit(account, address)
    if isinstance(attempt, LoginAttempt):
        await throttle.failed(attempt)
    return attempt


async def login(throttle: LoginThrottle, account: str, address: str) -> LoginAttempt | LoginRefusal:
    """The right password, if admitted."""
    attempt = await throttle.admit(account, address)
    if isinstance(attempt, LoginAttempt):
        await throttle.succeeded(attempt)
    return attempt


async def test_an_attacker_locks_only_his_own_address_out(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    assert isinstance(await login(throttle, "victim", OWNER_HOME), LoginAttempt)
    for _ in range(POLICY.pair_failures):
        assert isinstance(await guess(throttle, "victim", ATTACKER), LoginAttempt)
    refused = await throttle.admit("victim", ATTACKER)
    assert refused == LoginRefusal(POLICY.pair_lockout, "address_locked")
    # the owner, from home or from a new address, is not locked
    assert isinstance(await login(throttle, "victim", OWNER_HOME), LoginAttempt)
    assert isinstance(await login(throttle, "victim", "192.0.2.50"), LoginAttempt)
    # and the attacker's address still reaches other accounts (one NAT, many players)
    assert isinstance(await login(throttle, "neighbour", ATTACKER), LoginAttempt)
    clock.advance(POLICY.pair_lockout)
    assert isinstance(await throttle.admit("victim", ATTACKER), LoginAttempt)


async def test_five_tries_every_five_minutes_never_keep_the_owner_out(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    assert isinstance(await login(throttle, "victim", OWNER_HOME), LoginAttempt)
    admitted = 0
    for _ in range(36):  # three hours of 5 tries every 5 minutes
        for _ in range(5):
            admitted += isinstance(await guess(throttle, "victim", ATTACKER), LoginAttempt)
        assert isinstance(await login(throttle, "victim", OWNER_HOME), LoginAttempt)
        clock.advance(300)
    # the account's hourly budget (30 from strangers) caps the attacker: 3 hours -> 90 at most
    assert admitted <= 3 * POLICY.account_failures_per_hour


async def test_guessing_from_many_addresses_is_bounded_per_account_per_hour(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    """A botnet: every attempt from a fresh address, one every 5 s for 3 hours, plus
    a burst of concurrent attempts each hour. Admitted guesses in any hour stay within
    the budget; the owner's known address is never refused."""
    assert isinstance(await login(throttle, "victim", OWNER_HOME), LoginAttempt)
    start = clock.now
    admitted_at: list[float] = []
    bot = 0
    for step in range(3 * 720):
        if step % 720 == 0:  # 100 attempts in flight at once: all reserve before any fails
            burst = [await throttle.admit("victim", f"10.1.{bot}.{i}") for i in range(100)]
            bot += 1
            for attempt in burst:
                if isinstance(attempt, LoginAttempt):
                    admitted_at.append(clock.now)
                    await throttle.failed(attempt)
        bot += 1
        address = f"10.{bot // 250 % 250}.{bot % 250}.9"
        if isinstance(await guess(throttle, "victim", address), LoginAttempt):
            admitted_at.append(clock.now)
        if step % 60 == 0:
            assert isinstance(await login(throttle, "victim", OWNER_HOME), LoginAttempt)
        clock.advance(5)
    assert admitted_at  # the budget is used, not refused outright
    for t in range(int(start), int(clock.now), 60):  # every window of an hour
        in_window = [a for a in admitted_at if t <= a < t + HOUR]
        assert len(in_window) <= POLICY.account_failures_per_hour


async def test_known_addresses_have_a_bounded_budget_too(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    """An attacker sharing the owner's address (same NAT) is not unbounded either: the
    pair lock and the known addresses' own hourly budget hold."""
    assert isinstance(await login(throttle, "victim", OWNER_HOME), LoginAttempt)
    admitted = 0
    for _ in range(12 * 60):  # one guess a minute... 12 hours
        admitted += isinstance(await guess(throttle, "victim", OWNER_HOME), LoginAttempt)
        clock.advance(60)
    assert admitted <= 12 * POLICY.account_failures_per_hour


async def test_a_spraying_address_keeps_only_its_known_accounts(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    nat = "100.64.0.1"
    assert isinstance(await login(throttle, "regular", nat), LoginAttempt)
    await throttle.remember("newcomer", nat)  # registered from there
    for i in range(POLICY.address_failures_per_hour):
        assert isinstance(await guess(throttle, f"target{i}", nat), LoginAttempt)
    refused = await throttle.admit("stranger", nat)
    assert isinstance(refused, LoginRefusal) and refused.reason == "address_throttled"
    assert 0 < refused.retry_after <= HOUR
    assert isinstance(await login(throttle, "regular", nat), LoginAttempt)
    assert isinstance(await login(throttle, "newcomer", nat), LoginAttempt)
    assert isinstance(await login(throttle, "stranger", "100.64.0.2"), LoginAttempt)
    clock.advance(HOUR)
    assert isinstance(await login(throttle, "stranger", nat), LoginAttempt)


async def test_successes_and_errors_refund_their_reservation(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    for i in range(3 * POLICY.account_failures_per_hour):  # many logins, none wrong
        assert isinstance(await login(throttle, "busy", f"192.0.2.{i}"), LoginAttempt)
    attempts = [
        await throttle.admit("busy", f"10.0.0.{i}") for i in range(POLICY.account_failures_per_hour)
    ]
    assert isinstance(await throttle.admit("busy", "10.0.1.1"), LoginRefusal)  # all reserved
    for attempt in attempts:
        assert isinstance(attempt, LoginAttempt)
        await throttle.release(attempt)  # e.g. the database failed: no verdict
    assert isinstance(await throttle.admit("busy", "10.0.1.1"), LoginAttempt)


async def test_known_addresses_and_memory_are_bounded(clock: FakeClock) -> None:
    throttle = LoginThrottle(POLICY, clock, max_keys=100)
    for i in range(POLICY.known_addresses + 2):
        await throttle.remember("a", f"192.0.2.{i}")
    known = [
        i for i in range(POLICY.known_addresses + 2) if await throttle.is_known("a", f"192.0.2.{i}")
    ]
    assert known == [2, 3, 4]  # the most recent successes
    for i in range(1000):
        await guess(throttle, f"user{i}", f"10.0.{i // 250}.{i % 250}")
        await throttle.remember(f"user{i}", "192.0.2.1")
    assert isinstance(throttle.store, MemoryThrottleStore)
    assert throttle.store.tracked() == 100


async def test_a_policy_with_a_zero_limit_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        LoginPolicy(account_failures_per_hour=0)
