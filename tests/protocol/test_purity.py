"""The protocol package is pure: no I/O libraries loaded, no clock read.

What exactly is asserted about ``socket``: pydantic itself loads it. The first model
class pydantic builds runs its plugin loader, which imports ``importlib.metadata``,
which imports ``email.utils``, which imports ``socket`` (no socket is opened). So
:func:`test_import_loads_no_io_modules` asserts that asyncio, aiohttp, aioquic,
zeroconf, uvloop and ssl are never loaded by ``import protocol``, and that every
module of the ``socket`` family present afterwards was already present after
pydantic alone had built one model in the same fresh interpreter, i.e. that
``protocol`` adds none. :func:`test_no_module_imports_io` checks statically that no
protocol source file imports any of these modules.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

__all__: list[str] = []

PACKAGE = Path(__file__).resolve().parents[2] / "protocol"
SOURCES = sorted(PACKAGE.rglob("*.py"))

NEVER = ("asyncio", "aiohttp", "aioquic", "zeroconf", "uvloop", "ssl", "_ssl")
SOCKET_FAMILY = ("socket", "_socket", "selectors", "select")
IO_MODULES = NEVER + SOCKET_FAMILY + ("http", "urllib", "threading", "concurrent", "subprocess")

_PROBE = """
import json, sys
import pydantic

class _Probe(pydantic.BaseModel):
    x: int = 0

after_pydantic = sorted(sys.modules)
import protocol
print(json.dumps({"after_pydantic": after_pydantic, "after_protocol": sorted(sys.modules)}))
"""


def _modules_matching(names: list[str], roots: tuple[str, ...]) -> set[str]:
    return {m for m in names if m.split(".")[0] in roots}


def _fresh_interpreter(code: str) -> Any:
    """What ``code``, run by a new Python in the project root, printed as JSON."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
        cwd=PACKAGE.parent,
    )
    return json.loads(out.stdout)


def test_import_loads_no_io_modules() -> None:
    seen = _fresh_interpreter(_PROBE)
    after_protocol = seen["after_protocol"]
    after_pydantic = set(seen["after_pydantic"])
    assert "protocol" in after_protocol
    assert not _modules_matching(after_protocol, NEVER)
    added_by_protocol = _modules_matching(after_protocol, SOCKET_FAMILY) - after_pydantic
    assert not added_by_protocol


def test_protocol_alone_in_a_fresh_interpreter() -> None:
    loaded = _fresh_interpreter(
        "import json, sys; import protocol; print(json.dumps(sorted(sys.modules)))"
    )
    assert not _modules_matching(loaded, NEVER)


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_module_imports_io(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert not _imports(tree) & set(IO_MODULES)


# Clock reads -------------------------------------------------------------------

CLOCK_FUNCTIONS = {
    "time",
    "time_ns",
    "monotonic",
    "monotonic_ns",
    "perf_counter",
    "perf_counter_ns",
    "process_time",
    "process_time_ns",
    "thread_time",
    "clock_gettime",
    "clock_gettime_ns",
    "localtime",
    "gmtime",
    "ctime",
    "asctime",
    "strftime",
}
DATETIME_NOW = {"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"}


def _clock_reads(tree: ast.AST) -> list[str]:
    problems = []
    for node in ast.walk(tree):
        # import time / from time import ... : the time module has nothing but clocks here
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "time":
                    problems.append(f"line {node.lineno}: import time")
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            names = {a.name for a in node.names}
            if names & CLOCK_FUNCTIONS or "*" in names:
                problems.append(f"line {node.lineno}: from time import {sorted(names)}")
        elif isinstance(node, ast.Attribute):
            # datetime.now(), datetime.datetime.utcnow(), date.today(), ...
            if node.attr in DATETIME_NOW:
                problems.append(f"line {node.lineno}: .{node.attr}")
            # loop.time() or anything.monotonic(): a clock under another name
            if node.attr in {"monotonic", "perf_counter", "time_ns", "monotonic_ns"}:
                problems.append(f"line {node.lineno}: .{node.attr}")
    return problems


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_module_reads_the_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert _clock_reads(tree) == []


def test_clock_scan_finds_clock_reads() -> None:
    sample = (
        "import time\n"
        "from time import monotonic\n"
        "from datetime import datetime\n"
        "a = time.time()\n"
        "b = datetime.now()\n"
        "c = datetime.datetime.utcnow()\n"
        "d = loop.time_ns()\n"
    )
    assert len(_clock_reads(ast.parse(sample))) >= 5


def test_sources_found() -> None:
    names = {p.name for p in SOURCES}
    assert {"codec.py", "movement.py", "version.py", "factories.py", "__init__.py"} <= names
