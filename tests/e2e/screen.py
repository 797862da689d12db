"""A program on a pseudo-terminal, and the screen a person would see (pyte renders it).

``Screen(argv, env=..., cwd=...)`` starts the program with a new pty as its
stdin, stdout and stderr (the stdlib :mod:`pty` module), feeds everything it
prints to a VT100 emulator that also answers cursor position requests the way a
terminal does, and lets a test ``type()`` keys and ``await wait_for(...)`` what
the screen shows. Every wait has a timeout; ``close()`` kills what is left.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import os
import pty
import signal
import struct
import termios
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import pyte

__all__ = ["Screen"]


class _AnsweringScreen(pyte.Screen):
    """A pyte screen that writes its answers (cursor position reports) back to the program."""

    def __init__(self, columns: int, lines: int, fd: int) -> None:
        super().__init__(columns, lines)
        self._fd = fd

    def write_process_input(self, data: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self._fd, data.encode())


class Screen:
    """One program on a pty of ``columns`` x ``lines``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        columns: int = 120,
        lines: int = 50,
    ) -> None:
        self.argv = list(argv)
        self.env = {**env, "TERM": "xterm", "COLUMNS": str(columns), "LINES": str(lines)}
        self.cwd = cwd
        self.columns, self.lines = columns, lines
        self.transcript = ""  # everything printed, escape sequences and all
        self.process: asyncio.subprocess.Process | None = None
        self._master = -1
        self._screen: _AnsweringScreen | None = None
        self._stream: pyte.Stream | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._changed = asyncio.Event()
        self._closed = False

    async def start(self) -> Screen:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.lines, self.columns, 0, 0))
        self._master = master
        self._screen = _AnsweringScreen(self.columns, self.lines, master)
        self._stream = pyte.Stream(self._screen)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, stdin=slave, stdout=slave, stderr=slave, env=self.env, cwd=self.cwd,
                start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        asyncio.get_running_loop().add_reader(master, self._on_output)
        return self

    def _on_output(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the program closed the terminal
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._master)
            self._closed = True
        else:
            text = self._decoder.decode(data)
            self.transcript += text
            assert self._stream is not None
            self._stream.feed(text)
        self._changed.set()

    @property
    def display(self) -> list[str]:
        """The screen's lines, trailing blanks removed."""
        assert self._screen is not None
        return [line.rstrip() for line in self._screen.display]

    @property
    def cursor_line(self) -> str:
        """The line the cursor is on (where the person types)."""
        assert self._screen is not None
        return self.display[self._screen.cursor.y]

    def type(self, keys: str) -> None:
        """Type ``keys`` (``\\r`` is Enter, ``\\x04`` Ctrl-D)."""
        os.write(self._master, keys.encode())

    async def wait_for(self, check: str | Callable[[], bool], wait: float = 20.0) -> None:
        """Until the screen shows ``check`` (a text) or ``check()`` is true."""

        def done() -> bool:
            if isinstance(check, str):
                return any(check in line for line in self.display)
            return check()

        async def loop() -> None:
            while not done():
                if self._closed:
                    raise AssertionError(f"the program ended first; screen:\n{self.text()}")
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), wait)
        except TimeoutError:
            raise AssertionError(f"waited for {check!r}; screen:\n{self.text()}") from None

    async def shows_above_the_typed_line(
        self, prompt: str, typed: str, arrive: Callable[[], Awaitable[object]], arrived: str
    ) -> None:
        """At ``prompt``, type ``typed`` (no Enter); then ``arrive()`` makes ``arrived``
        appear: it is printed above the prompt, which is drawn again with ``typed`` still
        there to finish."""
        line = f"{prompt} {typed}"
        await self.wait_for(lambda: self.cursor_line == prompt)
        self.type(typed)
        await self.wait_for(lambda: self.cursor_line == line)
        await arrive()
        await self.wait_for(arrived)
        await self.wait_for(lambda: self.cursor_line == line)
        shown = self.display
        assert shown.index(line) > next(i for i, v in enumerate(shown) if arrived in v)

    def text(self) -> str:
        return "\n".join(line for line in self.display if line)

    async def wait_exit(self, wait: float = 20.0) -> int:
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), wait)
        with contextlib.suppress(TimeoutError):  # the last output, if it is still coming
            await asyncio.wait_for(self._drained(), 2.0)
        return code

    async def _drained(self) -> None:
        while not self._closed:
            self._changed.clear()
            await self._changed.wait()

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
        if self._master >= 0:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = -1
