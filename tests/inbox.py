"""A callable that records what it is called with, for a test to wait on.

Register an :class:`Inbox` as a message handler or an event listener, then
``await inbox.wait_for(n)`` or ``await inbox.wait_until(predicate)``: each waits on the
calls themselves (never a sleep) and fails with ``TimeoutError`` after ``within`` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["WAIT", "Inbox"]

WAIT = 20.0
"""How long a test waits for what it expects before it fails."""


class Inbox:
    """Collects the calls it receives; a test waits for a count or a condition on them."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def __call__(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait_for(self, count: int, within: float = WAIT) -> list[Any]:
        """The items received, once there are at least ``count``."""
        return await self.wait_until(lambda items: len(items) >= count, within)

    async def wait_until(
        self, predicate: Callable[[list[Any]], bool], within: float = WAIT
    ) -> list[Any]:
        """The items received, once ``predicate`` holds for them."""

        async def loop() -> None:
            while not predicate(self.items):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), within)
        return list(self.items)
