"""A newcomer's first runs of the seed's client snippet, as a user runs them: a subprocess.

The snippet is the seed's "Connecting as a Client" (imports adapted, the text
of ``test_seed_client_snippet.main``), written to a file and run with
``python -u -W error`` and ``PYTHONASYNCIODEBUG=1`` against
a real lobby (127.0.0.1, port 0) with ``SHARDS_SERVER_URL`` and
``SHARDS_P2P_PORT=0``. Whatever happens, the run must not leave anything open:
no "Unclosed client session", no "Event loop is closed", no pending task
destroyed, no coroutine never awaited.

* on a fresh account (no character yet), ``send_chat`` fails with an error that
  says what to call;
* with a character, it chats, prints the reality and stops cleanly on Ctrl-C;
* a failed ``connect`` (wrong password, lobby down) fails with one clear error.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import sys
from pathlib import Path

from mesh import NetworkClient
from protocol.candidates import Candidate
from tests.e2e.deployments import Deployment
from tests.e2e.test_seed_client_snippet import main as seed_main

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[2]

SNIPPET = (
    "import asyncio\nfrom mesh import NetworkClient\nfrom protocol import MessageType\n\n\n"
    + inspect.getsource(seed_main)
    + '\n\nif __name__ == "__main__":\n    asyncio.run(main())\n'
)
"""The seed's snippet as a program (the same text ``test_seed_client_snippet`` runs)."""

LEAKS = (
    "Unclosed",
    "Event loop is closed",
    "Task was destroyed",
    "was never awaited",
    "Exception ignored",
    "ResourceWarning",
)
"""What a client that left something open makes Python print."""


def _env(server_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONASYNCIODEBUG": "1",
        "PYTHONFAULTHANDLER": "1",
        "SHARDS_SERVER_URL": server_url,
        "SHARDS_P2P_PORT": "0",
    }


async def _start(tmp_path: Path, server_url: str, code: str) -> asyncio.subprocess.Process:
    script = tmp_path / "snippet.py"
    script.write_text(code)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-u", "-W", "error", str(script), cwd=tmp_path, env=_env(server_url),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _run(tmp_path: Path, server_url: str, code: str = SNIPPET) -> tuple[int, str, str]:
    process = await _start(tmp_path, server_url, code)
    try:
        out, err = await asyncio.wait_for(process.communicate(), 45)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _assert_nothing_leaked(stderr: str) -> None:
    leaked = [marker for marker in LEAKS if marker in stderr]
    assert not leaked, stderr


async def _account(deployment: Deployment, *, character: bool) -> None:
    setup = NetworkClient(deployment.url_for(0), p2p_port=0)
    await setup.connect("username", "password", register=True)
    if character:
        await setup.create_character("Aria", "Crimson Covenant", "Mage")
    await setup.disconnect()


async def test_fresh_account_gets_an_error_that_says_what_to_do(
    deployment: Deployment, tmp_path: Path
) -> None:
    await _account(deployment, character=False)
    code, out, err = await _run(tmp_path, deployment.url_for(1))
    assert code == 1, (out, err)
    last = err.strip().splitlines()[-1]
    assert last.startswith("protocol.errors.NotConnectedError: no character selected"), err
    assert "create_character(" in last and "select_character(" in last
    _assert_nothing_leaked(err)


async def test_snippet_with_a_character_chats_and_stops_cleanly(
    deployment: Deployment, tmp_path: Path
) -> None:
    await _account(deployment, character=True)
    process = await _start(tmp_path, deployment.url_for(1), SNIPPET)
    assert process.stdout is not None and process.stderr is not None
    seen: list[str] = []

    chat = "[global] Aria: Hello, world!\n"

    async def until_reality_and_chat() -> None:
        # both, in either order: on a cluster the chat comes back through Redis and may
        # arrive after the world state the snippet asks for next
        assert process.stdout is not None
        while line := (await process.stdout.readline()).decode():
            seen.append(line)
            if chat in seen and any(s.startswith("Current reality: ") for s in seen):
                return
        raise AssertionError(f"the snippet ended early: {seen}")

    # stderr read from the start, so what the snippet said is there whatever happens next
    stderr_read = asyncio.ensure_future(process.stderr.read())
    try:
        try:
            await asyncio.wait_for(until_reality_and_chat(), 45)
        except TimeoutError:
            raise AssertionError(f"no chat echo and world state within 45 s: {seen}") from None
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(asyncio.gather(process.stdout.read(), process.wait()), 30)
        except TimeoutError:
            # faulthandler (PYTHONFAULTHANDLER) prints where every thread is stuck
            process.send_signal(signal.SIGABRT)
            await asyncio.wait_for(process.wait(), 10)
            stuck = (await asyncio.wait_for(stderr_read, 10)).decode()
            raise AssertionError(
                f"the snippet did not stop within 30 s of Ctrl-C; its stderr:\n{stuck}"
            ) from None
        err = await asyncio.wait_for(stderr_read, 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        stderr_read.cancel()
    stderr = err.decode()
    assert stderr.strip().splitlines()[-1] == "KeyboardInterrupt", stderr
    _assert_nothing_leaked(stderr)


async def test_disconnect_stops_background_lobby_calls_before_closing_the_session(
    deployment: Deployment,
) -> None:
    """The address learning select starts calls the lobby on its own; disconnect stops it
    before closing the HTTP session, so no call of it opens a new session nothing closes
    (Python's "Unclosed client session" when the program ends)."""
    await _account(deployment, character=True)
    client = NetworkClient(deployment.url_for(0), p2p_port=0)
    rest = client.session.rest
    closed = asyncio.Event()
    calls_after_close: list[str] = []
    real_close = rest.close

    async def close_then_yield() -> None:
        await real_close()
        closed.set()
        await asyncio.sleep(0)  # as aiohttp's close does while its connector closes

    async def learn_when_closed() -> list[Candidate]:
        await closed.wait()
        calls_after_close.append("ice_servers")
        await client.peers.ice_servers(refresh=True)
        return []

    rest.close = close_then_yield  # type: ignore[method-assign]  # to know when it closed
    client.peers.learn_candidates = learn_when_closed  # type: ignore[method-assign]
    await client.connect("username", "password")
    (character,) = await client.get_characters()
    await client.select_character(character.id)
    await client.disconnect()
    assert calls_after_close == []
    assert rest._session is None  # noqa: SLF001 - no session was opened again


async def test_wrong_password_fails_once_and_cleanly(
    deployment: Deployment, tmp_path: Path
) -> None:
    await _account(deployment, character=True)
    code, out, err = await _run(
        tmp_path, deployment.url_for(1), SNIPPET.replace('"password")', '"wrong")')
    )
    assert code == 1, (out, err)
    last = err.strip().splitlines()[-1]
    assert last.startswith("protocol.errors.ApiError: "), err
    assert "username or password" in last
    _assert_nothing_leaked(err)


async def test_lobby_down_fails_once_and_cleanly(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on (closed right after)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = await _run(tmp_path, f"http://127.0.0.1:{port}")
    assert code == 1, (out, err)
    last = err.strip().splitlines()[-1]
    assert last.startswith("protocol.errors.ApiError: the lobby at http://127.0.0.1:"), err
    assert "is the lobby running" in last
    _assert_nothing_leaked(err)


async def test_failed_connect_leaves_the_client_reusable(deployment: Deployment) -> None:
    await _account(deployment, character=True)
    client = NetworkClient(deployment.url_for(2), p2p_port=0)
    try:
        try:
            await client.connect("username", "wrong")
        except Exception as exc:  # noqa: BLE001 - the type is asserted below
            assert type(exc).__name__ == "ApiError"
        assert client.session.phase == "closed" and client.connection_state == "idle"
        await client.connect("username", "password")
        assert client.connected
    finally:
        await client.disconnect()
