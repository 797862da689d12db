"""Test players for the game services: REST client + one WebSocket with a keeping inbox."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.lobby.support import ApiClient, frame_messages, ws_url

__all__ = ["GamePlayer", "Mailbox", "Refused"]

_ids = itertools.count(1)


class Refused(AssertionError):
    """The lobby answered a request with ERROR."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('error_code')}: {error.get('error_message')}")
        self.error = error
        self.code = error.get("error_code")


class Mailbox:
    """Every message of one socket, kept until a waiter takes it (order preserved)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.items: list[dict[str, Any]] = []
        self.all: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                async with self._changed:
                    for m in frame_messages(str(msg.data)):
                        self.items.append(m)
                        self.all.append(m)
                    self._changed.notify_all()
        finally:
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()

    async def take(
        self, predicate: Callable[[dict[str, Any]], bool], *, wait: float = 10.0
    ) -> dict[str, Any]:
        """Remove and return the first kept message matching ``predicate`` (wait for it)."""

        async def find() -> dict[str, Any]:
            async with self._changed:
                while True:
                    for i, m in enumerate(self.items):
                        if predicate(m):
                            return self.items.pop(i)
                    if self.closed.is_set():
                        raise ConnectionError("the socket closed")
                    await self._changed.wait()

        return await asyncio.wait_for(find(), wait)

    def drain(self, msg_type: str | None = None) -> list[dict[str, Any]]:
        """Remove and return every kept message (of ``msg_type``) already received."""
        taken = [m for m in self.items if msg_type is None or m.get("type") == msg_type]
        self.items = [m for m in self.items if m not in taken]
        return taken

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class GamePlayer:
    """A registered account with one selected character and (when connected) a socket."""

    def __init__(
        self, client: ApiClient, character: dict[str, Any], selected: dict[str, Any] | None = None
    ) -> None:
        self.client = client
        self.character = character
        self.selected = selected or {}
        self.username = ""
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.box: Mailbox | None = None

    @property
    def id(self) -> int:
        return int(self.character["id"])

    @property
    def name(self) -> str:
        return str(self.character["name"])

    async def connect(self) -> GamePlayer:
        self.ws = await self.client.http.ws_connect(
            ws_url(self.client.base), headers=self.client.headers()
        )
        self.box = Mailbox(self.ws)
        return self

    async def disconnect(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.box is not None:
            await self.box.close()
        self.ws = None
        self.box = None

    async def send(self, msg_type: str, **fields: Any) -> str:
        assert self.ws is not None, "not connected"
        mid = f"m{next(_ids)}"
        await self.ws.send_str(json.dumps({"type": msg_type, "message_id": mid, **fields}))
        return mid

    async def reply(self, mid: str, *, wait: float = 10.0) -> dict[str, Any]:
        assert self.box is not None
        return await self.box.take(
            lambda m: m.get("ref_id") == mid and m.get("type") in ("ack", "error"), wait=wait
        )

    async def request(self, msg_type: str, **fields: Any) -> dict[str, Any]:
        """Send and return the ACK (raise :class:`Refused` on ERROR)."""
        answer = await self.reply(await self.send(msg_type, **fields))
        if answer["type"] == "error":
            raise Refused(answer)
        return answer

    async def refused(self, msg_type: str, **fields: Any) -> str:
        """Send, expect ERROR, return its code."""
        answer = await self.reply(await self.send(msg_type, **fields))
        assert answer["type"] == "error", answer
        return str(answer["error_code"])

    async def next(self, msg_type: str, wait: float = 10.0, **match: Any) -> dict[str, Any]:
        assert self.box is not None
        return await self.box.take(
            lambda m: m.get("type") == msg_type and all(m.get(k) == v for k, v in match.items()),
            wait=wait,
        )

    async def lead_party_with(self, member: GamePlayer) -> str:
        """Create a party, invite ``member``, who sees the invite and accepts; its id."""
        party = str((await self.request("party_create"))["details"]["party_id"])
        await self.request("party_invite", target_id=member.id)
        await member.next("party_invite", party_id=party)
        await member.request("party_accept", party_id=party)
        return party

    async def rest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, data, _ = await self.client.call(method, path, body)
        return status, data
