"""Terminal plumbing shared by the modes of ``python -m mesh`` (LAN and lobby).

* :data:`COMMANDS` is the one command table of both modes: :func:`parse_command`
  reads a line with it and :func:`help_text` prints it, so help and behaviour
  cannot disagree. A command a mode cannot run is refused with a message
  saying which mode has it;
* :class:`Output` prints each event as a text line, or as one JSON object per
  line with ``--json`` (for scripts and tests), flushed at once; a start-up
  failure is one line on stderr (:meth:`Output.fatal`);
* :func:`stop_on_signals` is an event SIGINT and SIGTERM set;
* :func:`command_loop` hands each input line to the mode until it asks to
  quit, the input ends or the stop event is set. How it reads depends on what
  standard input is (:func:`input_kind`): on a terminal, a prompt_toolkit
  prompt with ``patch_stdout``, so that what arrives is printed above the line
  being typed; a pipe through the loop's pipe reader; a regular file in a
  daemon thread; and no input at all (stdin closed, or ``/dev/null`` as under
  nohup or a service manager) waits for SIGINT or SIGTERM;
* :data:`LOG_IDS` puts this peer's id on every log line once a mode knows it
  (``--log-format text|json``, :mod:`protocol.logformat`).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import math
import os
import signal
import stat
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from pydantic import BaseModel

from mesh.quality import ConnectionQuality
from protocol.logformat import StaticIds

__all__ = [
    "COMMANDS",
    "LOG_IDS",
    "ask",
    "Command",
    "CommandError",
    "CommandSpec",
    "InputKind",
    "Mode",
    "Output",
    "command_loop",
    "help_text",
    "input_kind",
    "parse_command",
    "quality_report",
    "stop_on_signals",
]

LOG_IDS = StaticIds()
"""The log filter of ``python -m mesh``: a mode sets ``peer_id`` when its node has one."""

Mode = Literal["lan", "lobby"]
BOTH: frozenset[Mode] = frozenset({"lan", "lobby"})
LOBBY: frozenset[Mode] = frozenset({"lobby"})


# -- the command table ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One row of the command table: ``/name args`` (or an alias) does ``summary``."""

    kind: str
    name: str
    args: str
    summary: str
    aliases: tuple[str, ...] = ()
    modes: frozenset[Mode] = BOTH

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.args}".rstrip()


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("whisper", "w", "NAME text", "whisper to one player (name or peer id)",
                ("whisper", "msg")),
    CommandSpec("party_chat", "p", "text", "party chat (LAN: everyone in the group)"),
    CommandSpec("faction", "f", "text", "faction chat", ("faction",), LOBBY),
    CommandSpec("go", "go", "LOCATION", "travel to a neighbouring location (its id)",
                ("travel",), LOBBY),
    CommandSpec("map", "map", "", "where you are and where /go can take you (players there)",
                ("exits", "where"), LOBBY),
    CommandSpec("pos", "pos", "X Y Z", "move within your location (position to peers nearby)",
                ("position",)),
    CommandSpec("who", "who", "", "who is near (LAN: connected and discovered peers)", ("list",)),
    CommandSpec("party", "party", "create [NAME] | invite NAME | accept [ID] | decline [ID]"
                " | leave | kick ID | disband", "manage your party", (), LOBBY),
    CommandSpec("world", "world", "", "the world state (reality, shards)", (), LOBBY),
    CommandSpec("quality", "quality", "", "each connected peer: path, RTT, loss, bytes each way",
                ("net",)),
    CommandSpec("help", "help", "", "this list", ("h", "?")),
    CommandSpec("quit", "quit", "", "leave (also Ctrl-D)", ("exit", "q")),
)  # fmt: skip
"""Every command of the terminal peer, in the order help lists them."""

PLAIN_LINE: dict[Mode, tuple[str, str]] = {
    "lan": ("party_chat", "a line without / is party chat to the whole group"),
    "lobby": ("chat", "a line without / is global chat"),
}
"""What a line without a leading ``/`` is, per mode: (command kind, help line)."""

PARTY_ACTIONS = ("create", "invite", "accept", "decline", "leave", "kick", "disband")

_BY_NAME: dict[str, CommandSpec] = {
    alias: spec for spec in COMMANDS for alias in (spec.name, *spec.aliases)
}
_MOVED = (
    "/move is two commands: /go LOCATION travels to another location (lobby mode), "
    "/pos X Y Z moves within this one"
)


class CommandError(ValueError):
    """A line that is not a valid command; the message says how to write it."""


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed line: ``kind`` (a :class:`CommandSpec` kind, or ``chat``) and its arguments.

    ``party`` commands carry the action in ``target`` (``create``, ``invite``, ...)
    and its argument in ``text``.
    """

    kind: str
    target: str = ""
    text: str = ""
    number: int = 0
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)


def help_text(mode: Mode) -> str:
    """The command list of ``mode``, as ``/help`` prints it."""
    rows = [spec for spec in COMMANDS if mode in spec.modes]
    width = max(len(spec.usage) for spec in rows if len(spec.usage) < 24)
    lines = [f"commands; {PLAIN_LINE[mode][1]}:"]
    for spec in rows:
        if len(spec.usage) > width:
            lines.append(f"  {spec.usage}")
            lines.append(f"  {'':{width}}  {spec.summary}")
        else:
            lines.append(f"  {spec.usage:{width}}  {spec.summary}")
    return "\n".join(lines)


def parse_command(line: str, mode: Mode) -> Command | None:
    """Parse one input line of ``mode`` (None for a blank one); raises :class:`CommandError`."""
    line = line.strip()
    if not line:
        return None
    if not line.startswith("/"):
        return Command(PLAIN_LINE[mode][0], text=line)
    head, _, rest = line.partition(" ")
    verb, rest = head[1:].lower(), rest.strip()
    spec = _BY_NAME.get(verb)
    if spec is None:
        if verb in ("move", "m"):
            raise CommandError(_MOVED)
        raise CommandError(f"unknown command /{verb} (try /help)")
    if mode not in spec.modes:
        raise CommandError(f"/{spec.name} needs a lobby (python -m mesh --lobby URL)")
    usage = f"usage: {spec.usage}"
    if spec.kind == "whisper":
        target, text = _split_target(rest)
        if not target or not text:
            raise CommandError(f'{usage} (quote a name with spaces: /w "Sir Aria" hi)')
        return Command("whisper", target=target, text=text)
    if spec.kind in ("party_chat", "faction"):
        if not rest:
            raise CommandError(usage)
        return Command(spec.kind, text=rest)
    if spec.kind == "go":
        if not rest.isdigit():
            raise CommandError(usage + " (a location id)")
        return Command("go", number=int(rest))
    if spec.kind == "pos":
        try:
            x, y, z = (float(v) for v in rest.split())
        except ValueError:
            raise CommandError(usage + " (three numbers)") from None
        if not all(math.isfinite(v) for v in (x, y, z)):
            raise CommandError(usage + " (finite numbers)")
        return Command("pos", position=(x, y, z))
    if spec.kind == "party":
        return _parse_party(rest, usage)
    if rest:
        raise CommandError(f"/{spec.name} takes no arguments")
    return Command(spec.kind)


def _parse_party(rest: str, usage: str) -> Command:
    action, _, arg = rest.partition(" ")
    action, arg = action.lower(), arg.strip()
    if action not in PARTY_ACTIONS:
        raise CommandError(f"{usage} (party chat is /p text)")
    if action == "invite" and not arg:
        raise CommandError("usage: /party invite NAME")
    if action == "kick" and not arg.isdigit():
        raise CommandError("usage: /party kick CHARACTER_ID")
    return Command("party", target=action, text=arg, number=int(arg) if arg.isdigit() else 0)


def _split_target(rest: str) -> tuple[str, str]:
    if rest[:1] in ('"', "'"):
        end = rest.find(rest[0], 1)
        if end < 0:
            return "", ""
        return rest[1:end].strip(), rest[end + 1 :].strip()
    target, _, text = rest.partition(" ")
    return target, text.strip()


# -- output -------------------------------------------------------------------------------


def quality_report(qualities: Iterable[ConnectionQuality]) -> tuple[str, list[dict[str, Any]]]:
    """``/quality``: one line per connected peer (path, RTT, loss, bytes each way) and the
    same as JSON rows."""
    rows: list[dict[str, Any]] = []
    lines: list[str] = []
    for q in sorted(qualities, key=lambda q: q.character_name.casefold()):
        sent = q.bytes_sent + q.relay_bytes_sent
        received = q.bytes_received + q.relay_bytes_received
        rows.append(
            {
                "name": q.character_name,
                "character_id": q.character_id,
                "path": q.path,
                "rtt_ms": None if q.rtt is None else round(q.rtt * 1000, 2),
                "loss": q.loss,
                "bytes_sent": sent,
                "bytes_received": received,
                "pending": q.pending_reliable,
            }
        )
        rtt = "-" if q.rtt is None else f"{q.rtt * 1000:.1f} ms"
        loss = "-" if q.loss is None else f"{q.loss:.1%}"
        lines.append(
            f"  {q.character_name}: {q.path}, rtt {rtt}, loss {loss}, "
            f"sent {_bytes(sent)}, received {_bytes(received)}"
            + (f", {q.pending_reliable} awaiting ack" if q.pending_reliable else "")
        )
    return ("\n".join(lines) or "  no peer connected"), rows


def _bytes(count: int) -> str:
    if count < 10_000:
        return f"{count} B"
    if count < 10_000_000:
        return f"{count / 1000:.1f} kB"
    return f"{count / 1_000_000:.1f} MB"


class Output:
    """Prints events as text lines or JSON objects (one per line, flushed).

    ``stream`` None means "``sys.stdout`` at the time of each line", which is what
    prompt_toolkit's ``patch_stdout`` replaces while a prompt is shown.
    """

    def __init__(self, stream: TextIO | None, *, as_json: bool) -> None:
        self._stream = stream
        self.as_json = as_json

    def emit(self, event: str, text: str, **fields: Any) -> None:
        """Print ``text``, or ``{"event": event, **fields}`` as JSON."""
        line = json.dumps({"event": event, **fields}, default=_as_json) if self.as_json else text
        stream = self._stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def fatal(self, text: str, **fields: Any) -> None:
        """A failure that ends the program: one line on stderr (and the JSON event)."""
        if self.as_json:
            self.emit("error", text, message=text, **fields)
        print(f"python -m mesh: {text}", file=sys.stderr, flush=True)


def _as_json(value: object) -> Any:
    """A typed body (:mod:`protocol.rest`, :mod:`protocol.acks`) as its JSON object; else text."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def stop_on_signals() -> asyncio.Event:
    """An event set on SIGINT or SIGTERM (where the running loop takes signal handlers)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    return stop


# -- input --------------------------------------------------------------------------------

InputKind = Literal["terminal", "pipe", "file", "none"]


def input_kind(stdin: TextIO | None) -> InputKind:
    """What standard input is: a terminal, a pipe or socket, a regular file, or nothing.

    "none" is a closed stdin or a character device that is not a terminal
    (``/dev/null``): nothing will ever be typed there.
    """
    if stdin is None:
        return "none"
    try:
        fd = stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError):
        return "none"
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "pipe"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISCHR(mode) and os.isatty(fd):
        return "terminal"
    return "none"


async def ask(stdin: TextIO | None, question: str, *, secret: bool) -> str | None:
    """Ask on the terminal (None when stdin is not one); a secret is not echoed."""
    if input_kind(stdin) != "terminal":
        return None
    if secret:
        answer = await asyncio.to_thread(getpass.getpass, question)
    else:
        answer = await asyncio.to_thread(input, question)
    return answer.strip() or None


async def command_loop(
    stdin: TextIO | None,
    stop: asyncio.Event,
    on_line: Callable[[str], Awaitable[bool]],
    *,
    out: Output,
    prompt: str = "> ",
) -> None:
    """``await on_line(line)`` for each line of ``stdin`` until it returns False,
    the input ends or ``stop`` is set (see the module docstring for how input is read)."""
    kind = input_kind(stdin)
    if kind == "terminal" and not out.as_json and sys.stdout.isatty():
        await _prompt_loop(stop, on_line, prompt)
        return
    if stdin is None or kind == "none":
        out.emit("info", "(no input to read: running until SIGINT or SIGTERM)", message="no input")
        await stop.wait()
        return
    lines, reader = await _lines(stdin, kind)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while True:
            getter = asyncio.ensure_future(lines.get())
            await asyncio.wait({getter, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                return
            line = getter.result()
            if line is None or not await on_line(line):
                return
    finally:
        stopped.cancel()
        if reader is not None:
            reader.cancel()


async def _prompt_loop(
    stop: asyncio.Event, on_line: Callable[[str], Awaitable[bool]], prompt: str
) -> None:
    """Lines typed at a prompt_toolkit prompt; output printed meanwhile goes above it.

    The prompt stays up while a command runs (a worker runs the lines in the order
    they were typed), so what is typed meanwhile is edited in the prompt, never
    echoed raw by the terminal. Ctrl-D lets the commands already typed finish.
    """
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    session: PromptSession[str] = PromptSession()
    typed: asyncio.Queue[str | None] = asyncio.Queue()

    async def work() -> None:
        while (line := await typed.get()) is not None and await on_line(line):
            pass

    worker = asyncio.ensure_future(work())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        with patch_stdout(raw=True):
            while True:
                asking = asyncio.ensure_future(session.prompt_async(prompt))
                await asyncio.wait({asking, stopped, worker}, return_when=asyncio.FIRST_COMPLETED)
                if not asking.done():  # a signal, or /quit
                    asking.cancel()
                    with contextlib.suppress(asyncio.CancelledError, EOFError):
                        await asking
                    return
                try:
                    typed.put_nowait(asking.result())
                except KeyboardInterrupt:  # Ctrl-C: leave now
                    return
                except EOFError:  # Ctrl-D: leave once what was typed has run
                    typed.put_nowait(None)
                    await asyncio.wait({worker, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    return
    finally:
        stopped.cancel()
        if not worker.done():
            worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


async def _lines(
    stream: TextIO, kind: InputKind
) -> tuple[asyncio.Queue[str | None], asyncio.Task[None] | None]:
    """Lines of ``stream`` in a queue (None at the end), and the task reading them, if any."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    if kind == "pipe" or kind == "terminal":
        reader = asyncio.StreamReader()
        with contextlib.suppress(ValueError, OSError):
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stream)

            async def pipe() -> None:
                while line := await reader.readline():
                    queue.put_nowait(line.decode("utf-8", "replace"))
                queue.put_nowait(None)

            return queue, asyncio.create_task(pipe(), name="stdin")

    # a regular file (or a stream the loop cannot watch): read it in a daemon thread
    def pump() -> None:
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            for line in stream:
                loop.call_soon_threadsafe(queue.put_nowait, line)
        with contextlib.suppress(RuntimeError):  # the loop may be closed by then
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="stdin", daemon=True).start()
    return queue, None
