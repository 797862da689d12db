"""The terminal peer in LAN mode: its command table and arguments, then the program run
as a user would (subprocesses; a pty where a terminal is needed; a network namespace of
the test's own where the default port 9000 must be free), and the LAN example program."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import signal
import sys
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh.__main__ import build_parser
from mesh.discovery import LanNode
from mesh.terminal import COMMANDS, Command, CommandError, Mode, help_text, parse_command
from protocol.messages.base import MessageType
from tests.e2e.private_net import PrivateNet, unavailable
from tests.e2e.screen import Screen
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
        ("/p regroup", Command("party_chat", text="regroup")),
        ("plain words are party chat", Command("party_chat", text="plain words are party chat")),
        ("/pos 1 2.5 -3", Command("pos", position=(1.0, 2.5, -3.0))),
        ("/who", Command("who")),
        ("/quit", Command("quit")),
        ("/help", Command("help")),
    ],
)
def test_lan_commands(line: str, expected: Command) -> None:
    assert parse_command(line, "lan") == expected


def test_lobby_commands() -> None:
    assert parse_command("hi all", "lobby") == Command("chat", text="hi all")
    assert parse_command("/f for the pact", "lobby") == Command("faction", text="for the pact")
    assert parse_command("/go 4", "lobby") == Command("go", number=4)
    assert parse_command("/pos 1 2 3", "lobby") == Command("pos", position=(1.0, 2.0, 3.0))
    invite = parse_command("/party invite Bob", "lobby")
    assert invite == Command("party", target="invite", text="Bob")
    kick = parse_command("/party kick 12", "lobby")
    assert kick is not None and (kick.target, kick.number) == ("kick", 12)


@pytest.mark.parametrize(
    ("mode", "line", "says"),
    [
        ("lan", "/w", "usage: /w NAME text"),
        ("lan", "/w Borin", "usage: /w NAME text"),
        ("lan", '/w "Sir Aria', "usage"),
        ("lan", "/p", "usage: /p text"),
        ("lan", "/pos 1 2", "usage: /pos X Y Z"),
        ("lan", "/pos a b c", "three numbers"),
        ("lan", "/pos 1 2 nan", "finite"),
        ("lan", "/dance", "unknown command /dance"),
        ("lan", "/go 3", "needs a lobby"),
        ("lan", "/world", "needs a lobby"),
        ("lan", "/move 1 2 3", "/go LOCATION"),
        ("lobby", "/move 3", "/pos X Y Z"),
        ("lobby", "/go north", "usage: /go LOCATION"),
        ("lobby", "/party hello all", "party chat is /p"),
        ("lobby", "/party kick Bob", "usage: /party kick"),
        ("lobby", "/who now", "takes no arguments"),
    ],
)
def test_bad_commands_say_how(mode: Mode, line: str, says: str) -> None:
    with pytest.raises(CommandError, match=re.escape(says)):
        parse_command(line, mode)


def test_blank_line_is_nothing() -> None:
    assert parse_command("   ", "lan") is None
    assert parse_command("", "lobby") is None


@pytest.mark.parametrize("mode", ["lan", "lobby"])
def test_help_is_the_table(mode: Mode) -> None:
    """Every row of the mode is in its help and parses; every other row is refused."""
    text = help_text(mode)
    for spec in COMMANDS:
        if mode in spec.modes:
            assert spec.usage in text and spec.summary in text
        else:
            assert spec.usage not in text
            with pytest.raises(CommandError, match="needs a lobby"):
                parse_command(f"/{spec.name}", mode)
    assert ("party chat" if mode == "lan" else "global chat") in text.splitlines()[0]


def test_arguments() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["--lan", "--name", "Aria", "--passphrase", "x", "--interface", "127.0.0.1", "--port", "0"]
    )
    assert (args.lan, args.name, args.interface, args.port) == (True, "Aria", ["127.0.0.1"], 0)
    lan_default = parser.parse_args(["--lan", "--interface", "127.0.0.1"])
    assert lan_default.port is None  # 9000, or a free port
    assert parser.parse_args(["--lobby", "http://127.0.0.1:8080"]).lobby == "http://127.0.0.1:8080"
    with pytest.raises(SystemExit):
        parser.parse_args(["--lan", "--lobby", "http://x"])  # mdns-guard: never started
    with pytest.raises(SystemExit):
        parser.parse_args(["--name", "Aria"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--lan", "--interface", "127.0.0.1", "--port", "70000"])
    epilog = parser.epilog or ""
    for spec in COMMANDS:
        assert spec.usage in epilog


ENV = {**os.environ, "PYTHONPATH": str(REPO)}
ENV.pop("SHARDS_P2P_PORT", None)
ENV.pop("SHARDS_PASSPHRASE", None)


def _lan(name: str, passphrase: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "mesh", "--lan", "--name", name, "--passphrase", passphrase,
        "--interface", "127.0.0.1", *extra,
    ]  # fmt: skip


async def _run_cli(*argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mesh", *argv, env=ENV,
        cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _line(stream: asyncio.StreamReader | None, pattern: str, wait: float = 30.0) -> str:
    """The first line of ``stream`` that matches ``pattern`` (re.search)."""
    assert stream is not None

    async def find() -> str:
        assert stream is not None
        while line := (await stream.readline()).decode():
            if re.search(pattern, line):
                return line
        raise AssertionError(f"the stream ended before a line matching {pattern!r}")

    return await asyncio.wait_for(find(), wait)


async def _lines(
    stream: asyncio.StreamReader | None, *patterns: str, wait: float = 30.0
) -> list[str]:
    """For each pattern, the first line of ``stream`` matching it, in any order."""
    assert stream is not None
    found: dict[str, str] = {}

    async def find() -> None:
        assert stream is not None
        while len(found) < len(patterns):
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"the stream ended; found only {found}")
            for pattern in patterns:
                if pattern not in found and re.search(pattern, line):
                    found[pattern] = line

    await asyncio.wait_for(find(), wait)
    return [found[p] for p in patterns]


def _clean(err: str) -> None:
    for noise in ("Traceback", "Unclosed", "Event loop is closed", "Task exception"):
        assert noise not in err, err


async def test_cli_refuses_a_wildcard_interface() -> None:
    wildcard = "0.0.0.0"  # noqa: S104 - refused before anything is bound
    code, _, err = await _run_cli(
        "--lan", "--name", "A", "--passphrase", "x", "--interface", wildcard
    )
    assert code == 2
    assert err.count("\n") == 1 and "cannot start" in err and "wildcard" in err


async def test_cli_on_loopback_answers_commands() -> None:
    code, out, err = await _run_cli(
        "--lan", "--name", "Solo", "--passphrase", secrets.token_hex(4),
        "--interface", "127.0.0.1", "--port", "0",
        stdin=b"/who\n/dance\n/quit\n",
    )  # fmt: skip
    assert code == 0
    assert "Solo (" in out and "you: Solo" in out
    assert out.count("unknown command /dance") == 1  # printed once
    assert out.rstrip().endswith("bye")
    _clean(err)


@pytest.fixture
def private_net() -> Iterator[PrivateNet]:
    """A network namespace of the test's own, where UDP port 9000 is free."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with PrivateNet() as net:
        yield net


@pytest.mark.netns
async def test_two_peers_on_one_machine_with_the_default_port(private_net: PrivateNet) -> None:
    """The README's one-machine try-out: the second peer takes a free port and says which;
    a port asked for explicitly fails in one line that suggests --port 0."""
    passphrase = secrets.token_hex(4)
    pipes = {"stdin": PIPE, "stdout": PIPE, "stderr": PIPE}
    first = await asyncio.create_subprocess_exec(
        *private_net.argv(*_lan("Aria", passphrase)), env=ENV, cwd=REPO, **pipes
    )
    second = None
    try:
        assert re.search(r"on 127\.0\.0\.1:9000,", await _line(first.stdout, r"^Aria \("))
        second = await asyncio.create_subprocess_exec(
            *private_net.argv(*_lan("Borin", passphrase)), env=ENV, cwd=REPO, **pipes
        )
        said = await _line(second.stderr, r"UDP port 9000 is taken")
        used = int(re.search(r"using port (\d+)", said).group(1))  # type: ignore[union-attr]
        # they find each other (the join may be printed before or after the ready line)
        ready, _ = await _lines(second.stdout, r"^Borin \(", r"^\+ Aria \(.*joined")
        assert f"on 127.0.0.1:{used}," in ready and used != 9000

        code, out, err = await _run_cli_in(private_net, *_lan("Cato", passphrase, "--port", "9000"))
        assert code == 1 and out == ""
        assert err.count("\n") == 1, err
        assert "UDP port 9000" in err and "--port 0" in err
        _clean(err)
    finally:
        for process in (p for p in (first, second) if p is not None):
            if process.returncode is None:
                assert process.stdin is not None
                process.stdin.write(b"/quit\n")
                process.stdin.close()
            _, err_bytes = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == 0
            _clean(err_bytes.decode())


async def _run_cli_in(net: PrivateNet, *argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *net.argv(*argv), env=ENV, cwd=REPO, stdin=DEVNULL, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, out.decode(), err.decode()


async def test_no_input_runs_until_sigterm() -> None:
    """``</dev/null`` (nohup, a service manager): no asyncio traceback, runs, stops cleanly."""
    argv = _lan("Daemon", secrets.token_hex(4), "--port", "0")
    process = await asyncio.create_subprocess_exec(
        *argv, env=ENV, cwd=REPO, stdin=DEVNULL, stdout=PIPE, stderr=PIPE
    )
    await _line(process.stdout, r"^Daemon \(")
    await _line(process.stdout, r"no input to read: running until SIGINT or SIGTERM")
    process.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert out.decode().rstrip().endswith("bye")
    _clean(err.decode())


async def test_closed_stdin_runs_until_sigint() -> None:
    command = " ".join(shlex.quote(a) for a in _lan("Closed", secrets.token_hex(4), "--port", "0"))
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", f"exec {command} <&-", env=ENV, cwd=REPO, stdout=PIPE, stderr=PIPE
    )
    await _line(process.stdout, r"no input to read")
    process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err
    _clean(err.decode())


async def test_a_file_of_commands_runs_and_leaves(tmp_path: Path) -> None:
    script = tmp_path / "commands.txt"
    script.write_text("/who\n/pos 1 2 3\n")
    argv = _lan("Scripted", secrets.token_hex(4), "--port", "0")
    with script.open("rb") as stdin:
        process = await asyncio.create_subprocess_exec(
            *argv, env=ENV, cwd=REPO, stdin=stdin, stdout=PIPE, stderr=PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert "you: Scripted" in out.decode() and "(position (1.0, 2.0, 3.0))" in out.decode()
    _clean(err.decode())


async def test_terminal_prompt_help_and_messages_above_the_typed_line() -> None:
    """On a terminal: a prompt; /help is the table; what arrives while a line is half typed
    is printed above it, and the line is still there, whole, to finish and send."""
    passphrase = f"pty-{secrets.token_hex(6)}"
    host = LanNode(
        name="Host", passphrase=passphrase, interfaces=["127.0.0.1"], port=0, heartbeat=0.5,
        peer_timeout=3.0, dial_grace=0.5, retry_interval=1.0,
    )  # fmt: skip
    heard: asyncio.Queue[Any] = asyncio.Queue()
    host.register_handler(MessageType.PARTY_CHAT, heard.put_nowait)
    async with host:
        screen = await Screen(_lan("Typist", passphrase, "--port", "0"), env=ENV, cwd=REPO).start()
        try:
            await screen.wait_for(lambda: screen.cursor_line == "Typist>")
            screen.type("/help\r")
            await screen.wait_for("/quit")
            shown = screen.text()
            for line in help_text("lan").splitlines():
                assert line.rstrip() in shown
            await host.wait_for_members(1, timeout=30)
            await screen.wait_for("Host (")  # joined
            await screen.shows_above_the_typed_line(
                "Typist>",
                "hello wor",
                lambda: host.send_party_chat("incoming while you type"),
                "[party] Host: incoming while you type",
            )
            screen.type("ld\r")
            said = await asyncio.wait_for(heard.get(), 20)
            assert said.content == "hello world" and said.sender_name == "Typist"
            screen.type("/quit\r")
            assert await screen.wait_exit() == 0
            assert "Traceback" not in screen.transcript
            assert "CPR" not in screen.transcript
        finally:
            await screen.close()


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
            "--port", "0", "--seconds", "20",
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
