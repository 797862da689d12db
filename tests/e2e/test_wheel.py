"""``python -m build`` on a copy of the repository: an sdist and a wheel, no warning on the
way, and the wheel holds the package data the programs read at run time (the world, the
admin and API docs pages, the Alembic revisions, the ``py.typed`` markers)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)  # an isolated build installs setuptools first

_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".*_cache",
    ".hypothesis", ".coverage", "tests", "bench",
)  # fmt: skip

DATA = ("lobby/data", "lobby/http/static", "lobby/storage/alembic")
"""Directories whose every file the programs may open at run time."""


def _data_files() -> set[str]:
    files = {"protocol/py.typed", "lobby/py.typed", "mesh/py.typed"}
    for top in DATA:
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.add(path.relative_to(ROOT).as_posix())
    return files


def test_python_m_build_makes_a_clean_wheel_with_the_package_data(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCES)
    out = tmp_path / "dist"
    # PYTHONDONTWRITEBYTECODE (set for the test run) makes setuptools warn that it skips
    # byte-compiling: a remark on this environment, not on the package; a user has it unset.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        env=env, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    warnings = [line for line in log.splitlines() if re.search(r"warn", line, re.I)]
    assert not warnings, "\n".join(warnings)
    (wheel,) = out.glob("*.whl")
    assert len(list(out.glob("*.tar.gz"))) == 1
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "lobby/data/world.json" in names
    assert any(n.startswith("lobby/storage/alembic/versions/") for n in names)
    missing = sorted(_data_files() - names)
    assert not missing, missing
