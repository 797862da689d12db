"""A NAT-lab test that fails still leaves no namespace and no process behind.

A pytest run (a subprocess) of a module whose test uses the module-shared
``natlab`` fixture, starts a player on a home host, writes the lab's tag, and
fails. Afterwards no namespace of that lab exists, and neither the player nor
the lobby runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netlab import natlab_unavailable_reason

__all__: list[str] = []

_REASON = natlab_unavailable_reason()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]

REPO_ROOT = Path(__file__).resolve().parents[2]

_FAILING = """
import subprocess
import pytest
from tests.e2e.conftest import LabWithLobby

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_fails_mid_game(natlab: LabWithLobby) -> None:
    lab, lobby = natlab
    (host,) = lab.homes("symmetric")
    player = await lab.player(host, lobby, "Failer")
    await player.play()
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    with open({tag_file!r}, "w") as out:
        pids = f"{{player.agent.process.pid}} {{lobby.agent.process.pid}}"
        out.write(f"{{lab.tag}} {{pids}}\\n{{listing}}")
    assert False, "this test fails on purpose"
"""


def _namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listing.stdout.splitlines() if line.split()}


def test_a_failing_lab_test_removes_every_namespace(tmp_path: Path) -> None:
    tag_file = tmp_path / "tag.txt"
    module = tmp_path / "test_failing_lab.py"
    module.write_text(_FAILING.format(tag_file=str(tag_file)))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(module),
            "-p",
            "tests.e2e.conftest",
            "-p",
            "no:cacheprovider",
            "--no-cov",
            "-q",
            "--rootdir",
            str(REPO_ROOT),
            "-c",
            str(REPO_ROOT / "pyproject.toml"),
        ],  # fmt: skip
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "this test fails on purpose" in run.stdout
    first, *listed = tag_file.read_text().splitlines()
    tag, *pids = first.split()
    # while it ran: the internet, the router and the host
    assert len({line.split()[0] for line in listed if line.startswith(tag)}) == 3
    assert not {name for name in _namespaces() if name.startswith(tag)}
    for pid in pids:  # the player and the lobby are gone too
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
