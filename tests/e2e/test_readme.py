"""Every command in README.md, run as written, in a fresh copy of the repository.

The commands are taken from README.md's fenced blocks each run, so the README
cannot drift from what works: a command no test here knows fails
:func:`test_every_readme_command_is_run`. They run in a network namespace of
the test's own with only its loopback up (``tests/e2e/private_net.py``), so the
fixed ports a user types (8888, 9000) are free there and nothing reaches the
host's network. The copy has no ``.venv``: the README's first command makes it,
with pip pointed (by environment) at a wheelhouse built beforehand, since the
namespace has no network. Programs that run until stopped (a lobby, a terminal
peer) are started, probed and stopped; the interactive peer runs on a pty.

Two kinds are not run here, and the tests say why: ``bash scripts/check.sh`` is
the test suite itself (CI runs it, :func:`test_the_check_command_is_what_ci_runs`),
and the benchmarks take up to 15 minutes (CI runs ``--quick``; their arguments
are checked against ``bench.run``'s own parser).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .private_net import PrivateNet, unavailable
from .screen import Screen

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]

# How each README command is run; the keys are the commands as written (comment cut).
FRESH = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/python -m lobby"
CHECK = "bash scripts/check.sh"
QUICKSTART_LOBBY = ".venv/bin/python examples/run_master_server.py"
CLIENT_EXAMPLE = ".venv/bin/python examples/client.py"
TERMINAL_PEER = ".venv/bin/python -m mesh --lobby http://localhost:8888"
LAN_ARIA = (
    '.venv/bin/python -m mesh --lan --name Aria --passphrase "our secret" --interface 127.0.0.1'
)
LAN_BORIN = (
    '.venv/bin/python -m mesh --lan --name Borin --passphrase "our secret" --interface 127.0.0.1'
)
DB_UPGRADE = ".venv/bin/python -m lobby db upgrade"
DB_CURRENT = ".venv/bin/python -m lobby db current --check"
KNOWN_COMMANDS = {
    FRESH,
    DB_UPGRADE,
    DB_CURRENT,
    CHECK,
    QUICKSTART_LOBBY,
    CLIENT_EXAMPLE,
    TERMINAL_PEER,
    LAN_ARIA,
    LAN_BORIN,
}
BENCH = re.compile(r"^(?:BENCH_PROFILE=\S+ )?\.venv/bin/python -m bench\.run\b")
SNIPPETS = {  # python blocks, told apart by a line each holds
    "protocol": "parsed = protocol.deserialize(protocol.serialize(msg))",
    "master_server": "async with MasterServer(host=",
    "network_client": "async with NetworkClient(",
}


# -- what README.md holds -------------------------------------------------------------------


def fenced(language: str) -> list[str]:
    """The bodies of README.md's fenced blocks in ``language``."""
    text = README.read_text()
    return [m.group(1) for m in re.finditer(rf"^```{language}\n(.*?)^```", text, re.M | re.S)]


def readme_commands() -> list[str]:
    """Every shell command of README.md, as written, without its trailing comment."""
    commands = []
    for block in fenced("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            if command:
                commands.append(command)
    return commands


def snippet(name: str) -> str:
    (code,) = [block for block in fenced("python") if SNIPPETS[name] in block]
    return code


# -- a fresh copy, its venv made by the README's first command -----------------------------


@dataclass
class Fresh:
    """The copy of the repository, the namespace, and what the first command printed."""

    root: Path
    net: PrivateNet
    env: dict[str, str]
    first: dict[str, Any] = field(default_factory=dict)

    def argv(self, command: str) -> list[str]:
        """``command`` as written, by bash, inside the namespace."""
        return self.net.argv("bash", "-c", command)

    @property
    def python(self) -> str:
        return str(self.root / ".venv" / "bin" / "python")


def _copy_repository(dest: Path) -> None:
    """The files a clone of this working tree would have (tracked and new, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def _wheelhouse(dest: Path) -> None:
    """Wheels of the project's dependencies and build backend, for an offline install."""
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "-w", str(dest), str(ROOT)], check=True, timeout=240)
    subprocess.run([*pip, "download", "-d", str(dest), *build], check=True, timeout=120)


def _run_until(
    argv: list[str], *, cwd: Path, env: dict[str, str], pattern: str, wait: float
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``argv``; its stdout up to a line matching ``pattern`` (or its end, or ``wait``)."""
    process = subprocess.Popen(  # noqa: S603
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    out = ""
    end = time.monotonic() + wait
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not re.search(pattern, out) and selector.select(max(0.0, end - time.monotonic())):
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk.decode()
    return process, out


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fresh]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("readme")
    root, wheels = base / "clone", base / "wheels"
    root.mkdir()
    _copy_repository(root)
    _wheelhouse(wheels)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHARDS_", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), SHARDS_ARGON2_TIME_COST="1",
               SHARDS_ARGON2_MEMORY_COST="1024", SHARDS_ARGON2_PARALLELISM="1")  # fmt: skip
    with PrivateNet() as net:
        spot = Fresh(root, net, env)
        process, out = _run_until(
            spot.argv(FRESH), cwd=root, env=env, pattern=r"lobby listening on \S+\n", wait=240
        )
        try:
            spot.first["stdout"] = out
            if "lobby listening on" in out:
                spot.first["status"] = _probe(spot, "http://127.0.0.1:8888/api/status")
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
            rest, err = process.communicate(timeout=30)
            spot.first["stdout"] += rest.decode()
            spot.first["stderr"] = err.decode()
            spot.first["code"] = process.returncode
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        yield spot


def _probe(spot: Fresh, url: str) -> str:
    """GET ``url`` from inside the namespace: the status code and body."""
    code = (
        "import sys, urllib.request\n"
        "with urllib.request.urlopen(sys.argv[1], timeout=10) as r:\n"
        "    print(r.status, r.read().decode())\n"
    )
    done = subprocess.run(
        spot.net.argv(spot.python, "-c", code, url), capture_output=True, text=True, timeout=30
    )
    return done.stdout + done.stderr


# -- the tests ----------------------------------------------------------------------------------


def test_every_readme_command_is_run() -> None:
    commands = readme_commands()
    unknown = [c for c in commands if c not in KNOWN_COMMANDS and not BENCH.match(c)]
    assert not unknown, f"README commands no test runs (add them to {__name__}): {unknown}"
    assert KNOWN_COMMANDS <= set(commands), KNOWN_COMMANDS - set(commands)
    blocks = fenced("python")
    assert len(blocks) == len(SNIPPETS)
    for name in SNIPPETS:
        snippet(name)


def test_the_fresh_machine_command(fresh: Fresh) -> None:
    """Venv, install (no deprecation warnings), the lobby answers on 8888, Ctrl-C stops it."""
    first = fresh.first
    assert "lobby listening on http://127.0.0.1:8888" in first["stdout"], first
    assert first["status"].startswith("200 "), first["status"]
    assert first["code"] == 0, first
    assert "Deprecat" not in first["stderr"] and "Traceback" not in first["stderr"], first["stderr"]
    assert (fresh.root / "shards-data" / "lobby.sqlite3").exists()
    assert (fresh.root / ".venv" / "bin" / "shards-lobby").exists()


def test_the_database_commands(fresh: Fresh) -> None:
    """``db upgrade`` then ``db current --check`` on the database the first command made."""
    for command in (DB_UPGRADE, DB_CURRENT):
        done = subprocess.run(
            fresh.argv(command), cwd=fresh.root, env=fresh.env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout.strip(), done.stdout  # the revision it is at (--check: exit 0, at head)


def test_building_the_package_warns_of_nothing(fresh: Fresh, tmp_path: Path) -> None:
    """The build backend's own output (``-v``) holds no deprecation warning."""
    done = subprocess.run(
        fresh.net.argv(fresh.python, "-m", "pip", "wheel", "--no-deps", "-v", "-w",
                       str(tmp_path), str(fresh.root)),
        env=fresh.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "deprecat" not in (done.stdout + done.stderr).lower()


def test_the_check_command_is_what_ci_runs() -> None:
    """``bash scripts/check.sh`` runs this suite, so it is not run from inside it: CI runs it."""
    assert CHECK in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_default_run_says_it_leaves_the_slow_tests_out() -> None:
    """Where the ~700 slow tests are deselected, pytest's header and summary say so, and how
    to run them (and README.md says the same)."""
    argv = [sys.executable, "-m", "pytest", "tests/mesh/test_sim.py", "--collect-only",
            "-p", "no:cacheprovider", "--no-cov"]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    header = "tests marked slow (mesh soaks, ~700) are deselected; run them with -m slow"
    assert header in done.stdout, done.stdout[-2000:]
    summary = re.search(r"^(\d+) slow mesh tests .* were deselected: run them with `-m slow`",
                        done.stdout, re.M)  # fmt: skip
    assert summary and int(summary.group(1)) > 0, done.stdout[-2000:]
    assert "bash scripts/check.sh -m slow" in README.read_text()
    slow = subprocess.run([*argv, "-m", "slow", "-q"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    collected = re.search(r"^(\d+)/\d+ tests collected", slow.stdout.splitlines()[-1])
    assert collected and collected.group(1) == summary.group(1), slow.stdout[-500:]
    assert "were deselected" not in slow.stdout


def test_the_benchmark_commands_parse() -> None:
    """Each benchmark command's arguments, as written, through ``bench.run``'s own parser
    (running them takes up to 15 minutes; CI runs ``--quick``)."""
    import bench.run

    assert ".venv/bin/python -m bench.run --quick" in (ROOT / ".ci" / "run").read_text()
    original = argparse.ArgumentParser.parse_args

    class Parsed(Exception):
        pass

    def parse_only(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        original(self, *args, **kwargs)  # exits (SystemExit) on a bad argument
        raise Parsed

    benches = [c for c in readme_commands() if BENCH.match(c)]
    assert benches
    for command in benches:
        argv = shlex.split(BENCH.sub("", command))
        setattr(argparse.ArgumentParser, "parse_args", parse_only)  # noqa: B010
        try:
            with pytest.raises(Parsed):
                bench.run.main(argv)
        finally:
            setattr(argparse.ArgumentParser, "parse_args", original)  # noqa: B010


async def _spawn(spot: Fresh, command: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *spot.argv(command), cwd=spot.root, env=spot.env, start_new_session=True,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _until(stream: asyncio.StreamReader | None, *patterns: str, wait: float = 60.0) -> str:
    """What ``stream`` printed until a line matched each of ``patterns`` (in any order)."""
    assert stream is not None
    seen: list[str] = []
    missing = list(patterns)

    async def read() -> str:
        assert stream is not None
        while line := (await stream.readline()).decode():
            seen.append(line)
            missing[:] = [p for p in missing if not re.search(p, line)]
            if not missing:
                return "".join(seen)
        raise AssertionError(f"ended before {missing}:\n{''.join(seen)}")

    try:
        return await asyncio.wait_for(read(), wait)
    except TimeoutError:
        raise AssertionError(f"no {missing} in {wait} s:\n{''.join(seen)}") from None


async def _stop(process: asyncio.subprocess.Process, how: int = signal.SIGINT) -> tuple[int, str]:
    """Ctrl-C (by default) to its process group; exit status and stderr."""
    if process.returncode is None:
        os.killpg(process.pid, how)
    try:
        _, err = await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        _, err = await process.communicate()
    return process.returncode if process.returncode is not None else -1, err.decode()


def _quiet(err: str) -> None:
    for noise in ("Traceback", "Unclosed", "Event loop is closed", "Task exception"):
        assert noise not in err, err


async def _run_python(spot: Fresh, code: str, wait: float = 60.0) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *spot.net.argv(spot.python, "-c", code), cwd=spot.root, env=spot.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), wait)
    return process.returncode or 0, out.decode()


async def test_the_protocol_snippet(fresh: Fresh) -> None:
    code, out = await _run_python(fresh, snippet("protocol"))
    assert code == 0, out


async def test_the_master_server_snippet(fresh: Fresh) -> None:
    process = await asyncio.create_subprocess_exec(
        *fresh.net.argv(fresh.python, "-u", "-c", snippet("master_server")), cwd=fresh.root,
        env=fresh.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        await _until(process.stdout, r"listening on http://127\.0\.0\.1:8888")
        assert _probe(fresh, "http://127.0.0.1:8888/api/status").startswith("200 ")
    finally:
        code, err = await _stop(process, signal.SIGTERM)
    assert code == -signal.SIGTERM, err  # the snippet runs until it is stopped


async def test_playing_against_the_quickstart_lobby(fresh: Fresh) -> None:
    """The lobby example; the NetworkClient snippet twice; client.py and the terminal peer
    at the same time on one machine (the second peer finds 9000 taken)."""
    lobby = await _spawn(fresh, QUICKSTART_LOBBY)
    client = peer = None
    try:
        await _until(lobby.stdout, r"lobby listening on http://127\.0\.0\.1:8888")
        for run in ("first", "second"):  # the second run finds the account and character
            code, out = await _run_python(fresh, snippet("network_client"))
            assert code == 0, f"{run} run:\n{out}"
            assert "whisper failed:" in out and "Traceback" not in out, out

        client = await _spawn(fresh, CLIENT_EXAMPLE)
        shown = await _until(
            client.stdout, r"^Current reality: ", r"\[global\] Username: Hello, world!"
        )
        assert "Created account username" in shown

        peer = await Screen(fresh.argv(TERMINAL_PEER), env=fresh.env, cwd=fresh.root).start()
        await peer.wait_for("username:")
        peer.type("borin\r")
        await peer.wait_for("password:")
        peer.type("axes and ale\r")
        await peer.wait_for(lambda: peer.cursor_line == "Borin>", wait=60)
        assert "UDP port 9000 is taken" in peer.text()  # client.py holds 9000
        peer.type("hello from the terminal\r")
        await _until(client.stdout, r"\[global\] Borin: hello from the terminal")
        peer.type("/quit\r")
        assert await peer.wait_exit() == 0
        _quiet(peer.transcript)
        code, err = await _stop(client)
        assert code == 0, err
        _quiet(err)
    finally:
        if peer is not None:
            await peer.close()
        if client is not None:
            await _stop(client, signal.SIGKILL)
        code, err = await _stop(lobby)
    assert code == 0, err
    _quiet(err)


async def test_the_lan_try_out_on_one_machine(fresh: Fresh) -> None:
    aria = await _spawn(fresh, LAN_ARIA)
    borin = None
    try:
        assert ":9000," in await _until(aria.stdout, r"^Aria \(")
        borin = await _spawn(fresh, LAN_BORIN)
        said = await _until(borin.stderr, r"UDP port 9000 is taken")
        port = re.search(r"using port (\d+)", said)
        assert port and port.group(1) != "9000", said
        await _until(aria.stdout, r"^\+ Borin \(.*joined")
        for process in (aria, borin):
            assert process.stdin is not None
            process.stdin.write(b"/who\n/quit\n")
            await process.stdin.drain()
        assert "connected: Borin" in await _until(aria.stdout, r"connected: Borin")
    finally:
        for process in (p for p in (aria, borin) if p is not None):
            try:
                _, err = await asyncio.wait_for(process.communicate(), 30)  # after /quit
            except TimeoutError:
                await _stop(process, signal.SIGKILL)
                raise
            assert process.returncode == 0, err
            _quiet(err.decode())


# -- the product points only inside itself ---------------------------------------------------

PRODUCT = ["README.md", "pyproject.toml", "docs", "protocol", "lobby", "mesh", "examples", "bench"]
OUTSIDE = re.compile(r"\.\./shared|DESIGN\.md|shared/seed|seed/000_")


def test_nothing_in_the_product_points_outside_the_repository() -> None:
    offenders = []
    for entry in PRODUCT:
        path = ROOT / entry
        files = [path] if path.is_file() else sorted(path.rglob("*"))
        for file in files:
            if file.is_file() and file.suffix in ("", ".md", ".py", ".toml", ".json", ".txt"):
                for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
                    if OUTSIDE.search(line):
                        offenders.append(f"{file.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    for doc in ("docs/architecture.md", "docs/specification.md"):
        assert (ROOT / doc).exists()
    for target in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)\)", README.read_text()):
        assert (ROOT / target).exists(), target


def test_pyproject_license_and_build_backend() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(meta["project"]["license"], str)  # an SPDX expression, not a table
    requires = meta["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(7[7-9]|[89]\d|\d{3,})(\.\d+)*", r) for r in requires)
