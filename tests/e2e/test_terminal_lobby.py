"""``python -m mesh --lobby URL``: a person at a terminal plays with a NetworkClient.

The terminal peer runs as a subprocess (``--json``: one event per line) against
an in-process lobby; Bob is a NetworkClient in the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from lobby import MasterServer
from mesh import MessageType

from .conftest import ClientFactory, Inbox, relayed

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[2]


class Terminal:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((line + "\n").encode())
        await self.process.stdin.drain()

    async def expect(self, event: str, wait: float = 20.0, **fields: Any) -> dict[str, Any]:
        """The next event named ``event`` whose fields match (earlier ones are kept)."""

        async def find() -> dict[str, Any]:
            assert self.process.stdout is not None
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"terminal exited; events: {self.events}")
                item = json.loads(raw)
                self.events.append(item)
                if item["event"] == event and all(item.get(k) == v for k, v in fields.items()):
                    return dict(item)

        return await asyncio.wait_for(find(), wait)


async def test_terminal_peer_in_lobby_mode(
    master: MasterServer, make_client: ClientFactory
) -> None:
    bob = await make_client("Bob")
    whispers, chats, parties, invites = Inbox(), Inbox(), Inbox(), Inbox()
    bob.register_handler(MessageType.WHISPER, whispers)
    bob.register_handler(MessageType.CHAT, chats)
    bob.register_handler(MessageType.PARTY_CHAT, parties)
    bob.register_handler(MessageType.PARTY_INVITE, invites)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mesh", "--lobby", master.url, "--username", "aria_term",
        "--register", "--name", "Aria", "--port", "0", "--json",
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "SHARDS_PASSWORD": "password123"},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    term = Terminal(process)
    try:
        ready = await term.expect("ready")
        assert ready["name"] == "Aria" and ready["location_id"] == 1
        sent = await bob.send_whisper("Aria", "welcome, Aria")
        assert sent.path == "direct"
        await term.expect("whisper", sender="Bob", content="welcome, Aria")
        await term.send("/w Bob thanks Bob")
        assert (await term.expect("sent", kind="whisper"))["path"] == "direct"
        assert (await whispers.wait_for(1))[0].content == "thanks Bob"
        await term.send("hello everyone")
        await chats.wait_until(lambda items: any(m.content == "hello everyone" for m in items))
        await term.send("/who")
        who = await term.expect("who")
        assert "Bob" in {p["name"] for p in who["players"]}
        await term.send("/party create")
        await term.expect("ok", kind="party_create")
        await term.send("/party invite Bob")
        (invite,) = await invites.wait_for(1)
        await bob.accept_party_invite(invite.party_id)
        while "Bob" not in (await term.expect("party"))["members"]:
            pass
        await term.send("/p party time")
        await parties.wait_until(lambda items: any(m.content == "party time" for m in items))
        await term.send("/go 999")
        await term.expect("error")
        await term.send("/nonsense")
        await term.expect("error")
        await term.send("/quit")
        await term.expect("bye")
        assert await asyncio.wait_for(process.wait(), 20) == 0
        assert relayed(master) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
