"""``python -m mesh --lobby URL``: a person at a terminal plays with a NetworkClient.

The terminal peer runs as a subprocess against an in-process lobby: with
``--json`` (one event per line) for the game, on a pty (the screen rendered by
pyte) where a person types at a prompt, and with no input at all. Bob is a
NetworkClient in the test. Every peer node binds a free port (``SHARDS_P2P_PORT=0``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from lobby.game.world import load_world
from mesh import MessageType
from mesh.terminal import help_text

from .conftest import ClientFactory, Deployment, Inbox, relayed
from .screen import Screen

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "SHARDS_P2P_PORT": "0"}
ENV.pop("SHARDS_PASSWORD", None)


def _clean(err: str) -> None:
    for noise in ("Traceback", "Unclosed", "Event loop is closed", "Task exception"):
        assert noise not in err, err


class Terminal:
    """A ``python -m mesh --json`` subprocess: lines in, one JSON event a line out."""

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

    async def exits_cleanly(self) -> None:
        """It exits with status 0, and (where stderr is a pipe) printed no traceback."""
        assert await asyncio.wait_for(self.process.wait(), 20) == 0
        if self.process.stderr is not None:
            _clean((await self.process.stderr.read()).decode())


@asynccontextmanager
async def terminal(
    *args: str, stdin: int = PIPE, stderr: int = PIPE, **env: str
) -> AsyncIterator[Terminal]:
    """``python -m mesh ARGS --json`` as a :class:`Terminal`, killed on the way out if it
    still runs."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mesh", *args, "--json",
        cwd=REPO, env={**ENV, **env}, stdin=stdin, stdout=PIPE, stderr=stderr,
    )  # fmt: skip
    try:
        yield Terminal(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_terminal_peer_in_lobby_mode(
    deployment: Deployment, make_client: ClientFactory
) -> None:
    bob = await make_client("Bob")
    whispers, chats, parties, invites = Inbox(), Inbox(), Inbox(), Inbox()
    bob.register_handler(MessageType.WHISPER, whispers)
    bob.register_handler(MessageType.CHAT, chats)
    bob.register_handler(MessageType.PARTY_CHAT, parties)
    bob.register_handler(MessageType.PARTY_INVITE, invites)
    async with terminal(
        "--lobby", deployment.url_for(1), "--username", "aria_term", "--register", "--name", "Aria",
        "--port", "0", stderr=asyncio.subprocess.DEVNULL, SHARDS_PASSWORD="password123",
    ) as term:  # fmt: skip
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
        created = await term.expect("ok", kind="party_create")
        await term.send("/party invite Bob")
        (invite,) = await invites.wait_for(1)
        assert created["details"] == {"party_id": invite.party_id}  # the ACK, as JSON
        await bob.accept_party_invite(invite.party_id)
        while "Bob" not in (await term.expect("party"))["members"]:
            pass
        await term.send("/p party time")
        await parties.wait_until(lambda items: any(m.content == "party time" for m in items))
        await term.send("/go 999")
        mark = len(term.events)
        await term.expect("error")
        await term.send("/nonsense")
        await term.expect("error", message="unknown command /nonsense (try /help)")
        await term.send("/help")
        help_event = await term.expect("help")
        # each error printed once: one for /go 999, one for /nonsense
        assert [e["event"] for e in term.events[mark:]].count("error") == 2, term.events[mark:]
        assert help_event["commands"] == help_text("lobby")
        await term.send("/quit")
        await term.expect("bye")
        await term.exits_cleanly()
        assert await relayed(deployment) == 0


async def test_the_terminal_shows_where_you_can_go(
    deployment: Deployment, make_client: ClientFactory
) -> None:
    bob = await make_client("Bob")  # at the start location, so it counts one player there
    world = load_world()  # the bundled world every test lobby runs
    async with terminal(
        "--lobby", deployment.url_for(1), "--username", "aria_map", "--register", "--name", "Aria",
        "--port", "0", SHARDS_PASSWORD="password123",
    ) as term:  # fmt: skip
        ready = await term.expect("ready")
        start = world.location(ready["location_id"])
        assert start is not None and bob.character is not None
        shown = await term.expect("map")  # before the first command
        assert shown["location"] == {"id": start.id, "name": start.name, "players": 2}
        assert [e["id"] for e in shown["exits"]] == list(start.neighbours)
        assert all(e["players"] == 0 for e in shown["exits"])
        target = start.neighbours[0]
        await term.send(f"/go {target}")
        await term.expect("moved")
        there = await term.expect("map")
        assert there["location"]["id"] == target and there["location"]["players"] == 1
        assert start.id in [e["id"] for e in there["exits"]]
        await term.send("/exits")
        assert (await term.expect("map"))["location"]["id"] == target
        await term.send("/quit")
        await term.expect("bye")
        await term.exits_cleanly()


async def test_a_person_at_a_terminal_signs_up_and_plays(
    deployment: Deployment, make_client: ClientFactory
) -> None:
    """No flags but the lobby: username and password are asked for (the password not
    echoed), a fresh account is created, a prompt appears, /help is the lobby table,
    a lobby error is printed once, and chat arriving is printed above the typed line."""
    bob = await make_client("Bob")
    screen = await Screen(
        [sys.executable, "-m", "mesh", "--lobby", deployment.url_for(1)], env=ENV, cwd=REPO
    ).start()
    try:
        await screen.wait_for("username:")
        screen.type("newcomer\r")
        await screen.wait_for("password:")
        screen.type("a long secret 42\r")
        await screen.wait_for(lambda: screen.cursor_line == "Newcomer>", wait=30)
        assert "a long secret 42" not in screen.transcript
        assert "(created account newcomer)" in screen.text()
        screen.type("/help\r")
        await screen.wait_for("/world")
        await screen.wait_for(lambda: screen.cursor_line == "Newcomer>")
        for line in help_text("lobby").splitlines():
            assert line.rstrip() in screen.text()
        screen.type("/go 999\r")
        await screen.wait_for("error")
        await screen.shows_above_the_typed_line(
            "Newcomer>",
            "half a li",
            lambda: bob.send_chat("hello newcomer"),
            "[global] Bob: hello newcomer",
        )
        assert sum("999" in line for line in screen.display if "error" in line) == 1
        screen.type("\x15/quit\r")  # Ctrl-U clears the line
        assert await screen.wait_exit() == 0
        _clean(screen.transcript)
    finally:
        await screen.close()


async def test_no_terminal_and_no_username_is_one_clear_line(deployment: Deployment) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mesh", "--lobby", deployment.url_for(1),
        cwd=REPO, env=ENV, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2 and out == b""
    text = err.decode()
    assert text.count("\n") == 1 and "--username" in text, text
    _clean(text)


async def test_no_input_plays_until_sigterm(deployment: Deployment) -> None:
    """``</dev/null`` with the account on the command line: runs, stops cleanly."""
    async with terminal(
        "--lobby", deployment.url_for(1), "--username", "daemon_peer", "--password", "password123",
        stdin=asyncio.subprocess.DEVNULL,
    ) as term:  # fmt: skip
        await term.expect("ready", wait=30)
        await term.expect("info", message="no input")
        term.process.send_signal(signal.SIGTERM)
        await term.expect("bye")
        await term.exits_cleanly()


async def test_an_unreachable_lobby_is_one_line(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mesh", "--lobby", "http://127.0.0.1:9", "--username", "x",
        "--password", "y",
        cwd=REPO, env=ENV, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 40)
    text = err.decode()
    assert process.returncode == 1 and out == b""
    assert text.count("\n") == 1 and "cannot start" in text, text
    _clean(text)
