"""``python -m lobby`` as a real subprocess: starts, prints its address once, answers, stops;
refuses to start, in one line saying what is wrong, on a bad setting (exit status 2), a busy
port (before touching the data directory), a data directory it cannot use or that another
lobby holds, and a database it cannot write (exit status 1); keeps its data directory
private."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.lobby.lobby_process import ROOT, lobby_process


async def test_python_m_lobby_serves_status_and_stops_on_sigterm(tmp_path: Path) -> None:
    async with lobby_process(tmp_path / "data", log=tmp_path / "lobby.log") as lobby:
        assert lobby.port > 0
        assert lobby.url == f"http://127.0.0.1:{lobby.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{lobby.url}/api/status") as resp:
                assert resp.status == 200
                body = await resp.json()
        assert body["status"] == "ok" and body["database"] == "sqlite"
        assert (tmp_path / "data" / "lobby.sqlite3").exists()
        assert await lobby.stop() == 0


async def test_python_m_lobby_reports_a_bad_setting(tmp_path: Path) -> None:
    text = await _refused(tmp_path, code=USAGE, SHARDS_PORT="not-a-port")
    assert "port" in text.lower()


async def test_fresh_clone_runs_python_m_lobby_with_defaults(tmp_path: Path) -> None:
    """As the README says: in a clone, ``python -m lobby`` with no flags (port from env)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    git = await asyncio.create_subprocess_exec(
        "git",
        "clone",
        "-q",
        "--no-hardlinks",
        str(ROOT),
        str(clone),
        stderr=asyncio.subprocess.PIPE,
    )
    _, git_err = await asyncio.wait_for(git.communicate(), 60)
    assert git.returncode == 0, git_err
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDS_")}
    env.pop("PYTHONPATH", None)
    env["SHARDS_PORT"] = "0"  # never a fixed port in a test; everything else default
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lobby",
        cwd=clone,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        match = re.fullmatch(r"lobby listening on (http://127\.0\.0\.1:\d+)\s*", line)
        assert match, line
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{match.group(1)}/api/status") as resp:
                assert resp.status == 200
        assert (clone / "shards-data" / "lobby.sqlite3").exists()
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- start-up failures: one line each, saying what it is -------------------------------------

FAST_ENV = {
    "SHARDS_ARGON2_TIME_COST": "1",
    "SHARDS_ARGON2_MEMORY_COST": "1024",
    "SHARDS_ARGON2_PARALLELISM": "1",
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDS_")}
    return {**env, "PYTHONPATH": str(ROOT), **FAST_ENV, **extra}


class Lobby:
    """``python -m lobby`` as a subprocess: its address, then everything it printed."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc, self.url = proc, url

    @classmethod
    async def start(cls, cwd: Path, *args: str, **env: str) -> Lobby:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lobby", "--port", "0", *args, cwd=cwd, env=_env(**env),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = re.fullmatch(r"lobby listening on (http://127\.0\.0\.1:\d+)\s*", line)
        if not match:
            proc.kill()
            _, err = await proc.communicate()
            raise AssertionError(f"no address: {line!r} {err.decode()}")
        return cls(proc, match.group(1))

    async def stop(self) -> tuple[int, str, str]:
        """SIGTERM; exit status, and the rest of stdout and stderr."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(self.proc.communicate(), 30)
        return self.proc.returncode or 0, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


USAGE, RUNTIME = 2, 1  # exit status of a bad setting; of a start-up failure


async def _refused(
    cwd: Path, *args: str, code: int, command: list[str] | None = None, **env: str
) -> str:
    """Run ``python -m lobby ARGS`` (or ``command``), expect it to refuse to start with
    exit status ``code``; its one stderr line."""
    argv = command or [sys.executable, "-m", "lobby", *args]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=_env(**env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    assert proc.returncode == code, (proc.returncode, text)
    assert out == b"", out
    assert text.count("\n") == 1 and text.startswith("lobby: "), text
    assert "Traceback" not in text and "errors.pydantic.dev" not in text
    return text


async def test_the_address_is_printed_once(tmp_path: Path) -> None:
    lobby = await Lobby.start(tmp_path, "--data-dir", str(tmp_path / "data"))
    code, out, err = await lobby.stop()
    assert code == 0
    assert "listening on" not in out + err  # only the one line read by Lobby.start
    assert "lobby started: database sqlite" in err


async def test_an_environment_setting_out_of_range_is_one_line(tmp_path: Path) -> None:
    text = await _refused(tmp_path, code=USAGE, SHARDS_PORT="70000")
    assert "SHARDS_PORT=70000" in text and "65535" in text
    flag = await _refused(tmp_path, "--port", "70000", code=USAGE)
    assert "port" in flag and "65535" in flag


async def test_the_help_names_the_program_as_it_was_started(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("shards-lobby")
    if not script.exists():
        pytest.skip("the shards-lobby script is not installed in this environment")
    for argv, name in (([str(script)], "shards-lobby"), ([sys.executable, "-m", "lobby"], None)):
        proc = await asyncio.create_subprocess_exec(
            *argv, "--help", cwd=tmp_path, env=_env(), stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        assert out.decode().startswith(f"usage: {name or 'python -m lobby'} "), out


async def test_a_busy_port_is_found_before_the_data_directory_is_touched(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        data = tmp_path / "data"
        text = await _refused(tmp_path, "--port", str(port), "--data-dir", str(data), code=RUNTIME)
    assert f"cannot listen on 127.0.0.1:{port}" in text and "in use" in text
    assert not data.exists()  # nothing created, nothing migrated


async def test_data_directory_errors_say_what_they_are(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    text = await _refused(tmp_path, "--port", "0", "--data-dir", str(a_file), code=RUNTIME)
    assert f"data directory {a_file} is not a directory" in text
    below = await _refused(
        tmp_path, "--port", "0", "--data-dir", str(a_file / "below"), code=RUNTIME
    )
    assert f"data directory {a_file / 'below'}: cannot create it" in below
    assert "cannot listen" not in text + below


async def test_a_second_lobby_on_one_data_directory_is_refused_until_the_first_dies(
    tmp_path: Path,
) -> None:
    data = str(tmp_path / "data")
    first = await Lobby.start(tmp_path, "--data-dir", data)
    try:
        text = await _refused(tmp_path, "--port", "0", "--data-dir", data, code=RUNTIME)
        assert f"in use by another lobby (pid {first.proc.pid})" in text
        first.proc.kill()  # kill -9: the kernel releases the lock
        await first.proc.wait()
        second = await Lobby.start(tmp_path, "--data-dir", data)
        assert (await second.stop())[0] == 0
    finally:
        first.kill()


async def test_the_data_directory_is_private(tmp_path: Path) -> None:
    """Created 0700 with every file 0600 (database, -wal, -shm, key, lock), whatever the
    umask: by ``python -m lobby``, and by ``MasterServer`` in a program."""
    data = tmp_path / "cli"
    lobby = await Lobby.start(tmp_path, "--data-dir", str(data))
    try:
        _assert_private(data)
    finally:
        assert (await lobby.stop())[0] == 0
    old = os.umask(0o022)
    try:
        from lobby import MasterServer
        from tests.lobby.support import fast_settings

        library = tmp_path / "library"
        async with MasterServer(settings=fast_settings(library)):
            _assert_private(library)
    finally:
        os.umask(old)


def _assert_private(data: Path) -> None:
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    names = {p.name for p in data.iterdir()}
    assert {"lobby.sqlite3", "lobby_key.pem", "lobby.lock", "lobby.sqlite3-wal"} <= names, names
    for path in data.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (path, oct(path.stat().st_mode))


def _mount_namespaces() -> str | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare (a read-only bind mount in a private mount namespace)"
    return None


async def test_a_read_only_database_is_refused_at_start(tmp_path: Path) -> None:
    """A database file the lobby cannot write (here: a read-only bind mount, which binds
    root too) is refused at start with one line, not served with 500s later."""
    reason = _mount_namespaces()
    if reason:
        pytest.skip(reason)
    data = tmp_path / "data"
    lobby = await Lobby.start(tmp_path, "--data-dir", str(data))
    assert (await lobby.stop())[0] == 0
    db = data / "lobby.sqlite3"
    script = (
        f"mount --bind -o ro {shlex.quote(str(db))} {shlex.quote(str(db))} && "
        f"exec {shlex.quote(sys.executable)} -m lobby --port 0 --data-dir {shlex.quote(str(data))}"
    )
    text = await _refused(
        tmp_path, code=RUNTIME, command=["unshare", "--mount", "sh", "-c", script]
    )
    assert f"database file {db}" in text and "Read-only file system" in text


# -- every setting on the command line, and a TOML file -------------------------------------


async def test_the_help_lists_every_setting_by_its_variable(tmp_path: Path) -> None:
    from lobby.config import LobbySettings, env_name

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lobby", "--help", cwd=tmp_path, env=_env(COLUMNS="100"),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    text = out.decode()
    missing = [f for f in LobbySettings.model_fields if env_name(f) not in text]
    assert not missing, missing
    for old in ("--host", "--port", "--data-dir", "--database-url", "--world-file", "--stun-port",
                "--no-stun", "--log-level", "--log-format", "--version", "--config"):  # fmt: skip
        assert old in text


async def test_a_lobby_runs_on_a_toml_file_under_flags_and_environment(tmp_path: Path) -> None:
    data = tmp_path / "from-toml"
    toml = tmp_path / "lobby.toml"
    toml.write_text(f'data_dir = "{data}"\nport = 1\nlog_format = "json"\nstun_enabled = false\n')
    lobby = await Lobby.start(tmp_path, "--config", str(toml), SHARDS_LOG_FORMAT="text")
    try:  # --port 0 (Lobby.start) beats port = 1 in the file
        assert (data / "lobby.sqlite3").exists()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{lobby.url}/api/status") as resp:
                assert resp.status == 200
    finally:
        code, _, err = await lobby.stop()
    assert code == 0
    assert "lobby started" in err and not err.lstrip().startswith("{")  # env beat the file


async def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    toml = tmp_path / "lobby.toml"
    toml.write_text("port = 0\nprot = 9000\n")
    text = await _refused(tmp_path, "--config", str(toml), code=USAGE)
    assert "unknown settings: prot" in text
    toml.write_text("port = [")
    assert "not valid TOML" in await _refused(tmp_path, "--config", str(toml), code=USAGE)
    toml.write_text('session_ttl = "soon"')
    assert f"{toml}: session_ttl=soon" in await _refused(
        tmp_path, "--config", str(toml), code=USAGE
    )
    url = await _refused(tmp_path, "--database-url", "mysql://u@h/db", code=USAGE)
    assert "unsupported database 'mysql'" in url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lobby", "--no-such-flag", cwd=tmp_path, env=_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == USAGE and b"unrecognized arguments: --no-such-flag" in err
