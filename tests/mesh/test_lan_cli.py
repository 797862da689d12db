"""The terminal peer's command language and argument parsing, and the LAN example program."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest

from mesh.__main__ import Command, CommandError, build_parser, parse_command
from mesh.discovery import LanNode
from protocol.messages.base import MessageType
from tests.mesh.discovery.guard import multicast_guard

__all__ = ["multicast_guard"]

pytestmark = pytest.mark.usefixtures("multicast_guard")

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "/w Borin meet me at the mill",
            Command("whisper", target="Borin", text="meet me at the mill"),
        ),
        ("/whisper a1b2c3d4 hi", Command("whisper", target="a1b2c3d4", text="hi")),
        ('/w "Sir Aria" well met', Command("whisper", target="Sir Aria", text="well met")),
        ("/p regroup", Command("party", text="regroup")),
        ("plain words are party chat", Command("party", text="plain words are party chat")),
        ("/move 1 2.5 -3", Command("move", position=(1.0, 2.5, -3.0))),
        ("/who", Command("who")),
        ("/quit", Command("quit")),
        ("/help", Command("help")),
    ],
)
def test_commands(line: str, expected: Command) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "/w",
        "/w Borin",
        '/w "Sir Aria',
        '/w "Sir Aria"',
        "/p",
        "/move 1 2",
        "/move a b c",
        "/move 1 2 nan",
        "/dance",
    ],
)
def test_bad_commands_say_how(line: str) -> None:
    with pytest.raises(CommandError, match="usage|unknown|finite"):
        parse_command(line)


def test_blank_line_is_nothing() -> None:
    assert parse_command("   ") is None


def test_arguments() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["--lan", "--name", "Aria", "--passphrase", "x", "--interface", "127.0.0.1", "--port", "0"]
    )
    assert (args.lan, args.name, args.interface, args.port) == (True, "Aria", ["127.0.0.1"], 0)
    assert parser.parse_args(["--lobby", "http://127.0.0.1:8080"]).lobby == "http://127.0.0.1:8080"
    with pytest.raises(SystemExit):
        parser.parse_args(["--lan", "--lobby", "http://x"])  # mdns-guard: never started
    with pytest.raises(SystemExit):
        parser.parse_args(["--name", "Aria"])


async def _run_cli(*argv: str, stdin: bytes = b"") -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mesh", *argv,
        cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(stdin), 30)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_cli_refuses_a_wildcard_interface() -> None:
    wildcard = "0.0.0.0"  # noqa: S104 - refused before anything is bound
    code, out = await _run_cli("--lan", "--name", "A", "--passphrase", "x", "--interface", wildcard)
    assert code == 2 and "cannot start" in out


async def test_cli_on_loopback_answers_commands() -> None:
    code, out = await _run_cli(
        "--lan", "--name", "Solo", "--passphrase", secrets.token_hex(4),
        "--interface", "127.0.0.1", "--port", "0",
        stdin=b"/who\n/dance\n/quit\n",
    )  # fmt: skip
    assert code == 0
    assert "Solo (" in out and "you: Solo" in out and "unknown command /dance" in out
    assert out.rstrip().endswith("bye")


async def test_example_joins_a_lan_game() -> None:
    passphrase = f"example-{secrets.token_hex(6)}"
    host = LanNode(
        name="Host", passphrase=passphrase, interfaces=["127.0.0.1"], port=0, heartbeat=0.5,
        peer_timeout=3.0, dial_grace=0.5, retry_interval=1.0,
    )  # fmt: skip
    got: dict[str, asyncio.Future[Any]] = {
        kind: asyncio.get_running_loop().create_future()
        for kind in ("whisper", "party_chat", "position_update")
    }

    def collect(message: Any) -> None:
        future = got[str(message.type)]
        if not future.done():
            future.set_result(message)

    for kind in (MessageType.WHISPER, MessageType.PARTY_CHAT, MessageType.POSITION_UPDATE):
        host.register_handler(kind, collect)
    async with host:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(REPO / "examples" / "lan_play.py"),
            "--name", "Guest", "--passphrase", passphrase, "--interface", "127.0.0.1",
            "--seconds", "20",
            cwd=REPO, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        try:
            whisper, party, position = await asyncio.wait_for(asyncio.gather(*got.values()), 30)
            assert whisper.content == "hi Host, Guest here"
            assert party.content == "hello from Guest" and party.sender_name == "Guest"
            assert (position.position.x, position.position.y) == (1.0, 2.0)
        finally:
            if process.returncode is None:
                process.kill()
            await process.communicate()
