"""Message handlers by type (sync or async) and the background tasks that run them.

:class:`HandlerTable` keeps the handlers ``NetworkClient.register_handler``
takes and calls them for each message, in registration order. A handler may
be a plain function or a coroutine function: an awaitable result is run as a
task of the table's :class:`BackgroundTasks`. A handler's exception is logged
and never stops the other handlers or the client.

:class:`BackgroundTasks` is a set of fire-and-forget tasks that can be cancelled
and awaited together (on disconnect), so none outlives its client.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from typing import Any

from protocol.messages.base import BaseMessage, Handler, MessageType

__all__ = ["BackgroundTasks", "HandlerTable"]

logger = logging.getLogger("mesh.client")


class BackgroundTasks:
    """Tasks started and forgotten by their owner, cancelled together by :meth:`cancel_all`."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` as a task (needs a running loop)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self) -> None:
        """Cancel every running task and wait until each has finished (idempotent)."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class HandlerTable:
    """Handlers by message type (see the module docstring)."""

    def __init__(self, tasks: BackgroundTasks) -> None:
        self._tasks = tasks
        self._handlers: dict[MessageType, list[Handler]] = {}

    def add(self, message_type: MessageType | str, handler: Handler) -> None:
        """Call ``handler(message)`` for every message of ``message_type``."""
        self._handlers.setdefault(MessageType(message_type), []).append(handler)

    def remove(self, message_type: MessageType | str, handler: Handler) -> None:
        """Stop calling ``handler`` for ``message_type`` (no error if it was not added)."""
        handlers = self._handlers.get(MessageType(message_type), [])
        if handler in handlers:
            handlers.remove(handler)

    def handlers(self, message_type: MessageType | str) -> tuple[Handler, ...]:
        """The handlers of ``message_type``, in the order they are called."""
        return tuple(self._handlers.get(MessageType(message_type), ()))

    def dispatch(self, msg: BaseMessage) -> None:
        """Call every handler of ``msg.type``; awaitable results run as background tasks."""
        for handler in self.handlers(msg.type):
            try:
                result = handler(msg)
            except Exception:
                logger.exception("handler %r failed on %s", handler, msg.type)
                continue
            if inspect.isawaitable(result):
                self._tasks.spawn(_guarded(result, handler, str(msg.type)))


async def _guarded(result: Awaitable[Any], handler: Handler, message_type: str) -> None:
    try:
        await result
    except Exception:
        logger.exception("handler %r failed on %s", handler, message_type)
