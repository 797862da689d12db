"""The WebSocket write path: writes that must wait for the socket, in order, none lost."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lobby import MasterServer
from lobby.connection import _finish
from protocol.messages import ChatMessage
from tests.lobby.support import (
    FakeClock,
    fast_settings,
    frame_messages,
    raw_ws,
    signed_up,
)


class _FrameReader:
    """Unmasked server frames off a raw socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    async def _need(self, n: int) -> bytes:
        loop = asyncio.get_running_loop()
        while len(self.buf) < n:
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), 10)
            assert chunk, "the server closed the socket"
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    async def text(self) -> str:
        b0, b1 = await self._need(2)
        assert b0 == 0x81, f"expected one final text frame, got {b0:#x}"
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self._need(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._need(8))
        return (await self._need(length)).decode()


async def test_writes_that_wait_for_the_socket_arrive_once_and_in_order(
    tmp_path: Path, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    settings = fast_settings(tmp_path / "d", ws_send_queue_max=100_000)
    async with MasterServer(settings=settings, clock=clock) as server:
        client = await signed_up(server.url, http, "reader")
        assert client.token is not None
        sock = await raw_ws(server.port, client.token)
        try:
            (conn,) = server.hub.connections()
            payload = ChatMessage(sender_id=1, sender_name="Bard", content="la" * 500)
            sent = 0
            # Bounded: until writes have had to wait (a queue builds up behind them), then
            # a little more; at most 5000 messages of ~1 KiB.
            backed_up = 0
            while backed_up < 50 and sent < 5000:
                payload.message_id = f"m{sent}"
                server.hub.broadcast(payload)
                sent += 1
                await asyncio.sleep(0)
                if conn.queue_length:
                    backed_up += 1
            assert backed_up, "the socket never made a write wait"
            reader = _FrameReader(sock)
            ids: list[str] = []
            while len(ids) < sent:
                for msg in frame_messages(await reader.text()):
                    if msg.get("type") == "chat":
                        ids.append(msg["message_id"])
            assert ids == [f"m{i}" for i in range(sent)]
            assert conn.close_code is None and conn.queue_length == 0
        finally:
            sock.close()


async def test_finish_follows_the_awaited_outcome() -> None:
    loop = asyncio.get_running_loop()

    async def write(fut: asyncio.Future[None], out: list[str]) -> None:
        out.append("start")
        await fut
        out.append("done")

    # resumed after the future completes
    fut: asyncio.Future[None] = loop.create_future()
    out: list[str] = []
    coro = write(fut, out)
    waiting: Any = coro.send(None)
    task = asyncio.create_task(_finish(coro, waiting))
    fut.set_result(None)
    await asyncio.wait_for(task, 10)
    assert out == ["start", "done"]

    # the future's failure surfaces from the write
    fut = loop.create_future()
    coro = write(fut, out)
    waiting = coro.send(None)
    task = asyncio.create_task(_finish(coro, waiting))
    fut.set_exception(ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(task, 10)

    # cancelling the finishing task cancels the write
    fut = loop.create_future()
    coro = write(fut, out)
    waiting = coro.send(None)
    task = asyncio.create_task(_finish(coro, waiting))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fut.cancelled() and coro.cr_frame is None  # the write ended, nothing left suspended


def _writer_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("lobby-ws-writer-")]


async def test_a_client_that_keeps_up_costs_no_writer_task_and_a_close_flushes_first(
    lobby: MasterServer, make_client: Any
) -> None:
    client = make_client()
    await client.sign_up("keepsup")
    sock = await raw_ws(lobby.port, client.token)
    try:
        (conn,) = lobby.hub.connections()
        reader = _FrameReader(sock)
        for i in range(3):
            lobby.hub.broadcast(ChatMessage(sender_id=1, sender_name="Bard", content=f"hi {i}"))
            assert [m["content"] for m in frame_messages(await reader.text())] == [f"hi {i}"]
        assert _writer_tasks() == []
        # queued and closed in the same breath: the message still goes out before the close
        conn.send(ChatMessage(sender_id=1, sender_name="Bard", content="last words"))
        conn.close(1000, "bye")
        assert [m["content"] for m in frame_messages(await reader.text())] == ["last words"]
        b0, _ = await reader._need(2)
        assert b0 == 0x88  # then the close frame
        await asyncio.wait_for(conn.closed.wait(), 10)
    finally:
        sock.close()
