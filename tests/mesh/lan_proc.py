"""Drive ``python -m mesh --lan --json`` processes from a test: send lines, await events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

__all__ = ["PeerProcess"]

Event = dict[str, Any]


class PeerProcess:
    """One terminal peer process: its JSON events, collected as they arrive."""

    def __init__(self, process: asyncio.subprocess.Process, label: str) -> None:
        self.process = process
        self.label = label
        self.events: list[Event] = []
        self.stderr = bytearray()
        self._changed = asyncio.Event()
        self._tasks = [
            asyncio.ensure_future(self._read_stdout()),
            asyncio.ensure_future(self._read_stderr()),
        ]
        self.ready: Event = {}

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            if line.startswith(b"{"):
                self.events.append(json.loads(line))
                self._changed.set()
        self._changed.set()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(4096):
            del self.stderr[: max(0, len(self.stderr) + len(chunk) - 65536)]
            self.stderr += chunk

    @property
    def peer_id(self) -> str:
        return str(self.ready["peer_id"])

    def matching(self, which: str, /, **fields: Any) -> list[Event]:
        return [
            e
            for e in self.events
            if e["event"] == which and all(e.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(
        self, predicate: Callable[[list[Event]], bool], within: float = 30.0
    ) -> list[Event]:
        """Wait until ``predicate(events)`` holds; fail with the process's output otherwise."""

        async def wait() -> None:
            while not predicate(self.events):
                if self.process.stdout is not None and self.process.stdout.at_eof():
                    raise AssertionError(f"{self.label} ended: {self.stderr.decode()[-2000:]}")
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), within)
        except TimeoutError as exc:
            raise AssertionError(
                f"{self.label}: condition not met; events={self.events[-20:]} "
                f"stderr={self.stderr.decode()[-2000:]}"
            ) from exc
        return self.events

    async def wait_event(self, which: str, /, within: float = 30.0, **fields: Any) -> Event:
        await self.wait_for(lambda _: bool(self.matching(which, **fields)), within)
        return self.matching(which, **fields)[0]

    async def start(self, within: float = 30.0) -> Event:
        self.ready = await self.wait_event("ready", within)
        return self.ready

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
