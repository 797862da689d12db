"""Waiting on another process's state, which sends no event to wait on.

A lobby process behind Redis, or a player in a network namespace, changes state where no
callback of this test can see it: the test asks again, shortly, within a bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["eventually"]


async def eventually(
    probe: Callable[[], Awaitable[bool]], *, within: float = 10.0, every: float = 0.05
) -> None:
    """Return once ``await probe()`` is true; :class:`TimeoutError` after ``within`` s."""
    async with asyncio.timeout(within):
        # another process's state: no event crosses to us, so ask again shortly
        while not await probe():  # noqa: ASYNC110
            await asyncio.sleep(every)
