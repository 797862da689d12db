"""The sans-I/O mesh core stays pure: no event loop, no sockets, no clock.

:class:`mesh.core.MeshCore` and every module it is built from are driven only
by ``receive_datagram(data, addr, now)``, ``datagrams_to_send(now)``,
``get_timer()``, ``handle_timer(now)`` and API calls that take ``now``. These
tests turn that rule into a failure: a module of the core that imports asyncio,
socket, time or an I/O library, reads the clock, or imports the asyncio side of
the package (``mesh.node``, ``mesh.client``, ``mesh.discovery``) fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MESH = Path(__file__).parents[2] / "mesh"
CORE_MODULES = (
    "_quic_rx",
    "_quic_tx",
    "_quicshim",
    "admission",
    "auth",
    "certs",
    "config",
    "context",
    "core",
    "datagrams",
    "demux",
    "events",
    "gate",
    "handshake",
    "link",
    "multipath",
    "paths",
    "quality",
    "relay",
    "reliable",
    "router",
    "streams",
    "stun_client",
    "stun_transactions",
    "turn_client",
    "turn_path",
)
"""The modules of the sans-I/O core (``mesh/<name>.py``)."""

FORBIDDEN_ROOTS = {
    "aiohttp",
    "asyncio",
    "ifaddr",
    "select",
    "selectors",
    "signal",
    "socket",
    "subprocess",
    "threading",
    "time",
    "uvloop",
    "zeroconf",
}
CLOCK_ATTRIBUTES = {"now", "utcnow", "today", "monotonic", "perf_counter", "time_ns"}
CLOCK_OWNERS = {"datetime", "date", "time", "loop"}


def _tree(name: str) -> ast.Module:
    return ast.parse((MESH / f"{name}.py").read_text(), filename=f"mesh/{name}.py")


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "mesh":
                names.update(f"mesh.{alias.name}" for alias in node.names)
    return names


def test_the_list_covers_every_module_the_core_imports() -> None:
    """A new part of the core is checked too: the list is closed under mesh imports."""
    for name in CORE_MODULES:
        for module in _imports(_tree(name)):
            if module.startswith("mesh."):
                assert module.removeprefix("mesh.") in CORE_MODULES, (
                    f"mesh/{name}.py imports {module}, outside the sans-I/O core"
                )


@pytest.mark.parametrize("name", CORE_MODULES)
def test_no_io_or_clock_imports(name: str) -> None:
    roots = {module.split(".")[0] for module in _imports(_tree(name))}
    assert not roots & FORBIDDEN_ROOTS, f"mesh/{name}.py imports {roots & FORBIDDEN_ROOTS}"


@pytest.mark.parametrize("name", CORE_MODULES)
def test_no_clock_reads(name: str) -> None:
    for node in ast.walk(_tree(name)):
        if not isinstance(node, ast.Attribute) or node.attr not in CLOCK_ATTRIBUTES:
            continue
        owner = node.value
        owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        assert owner_name not in CLOCK_OWNERS, (
            f"mesh/{name}.py line {node.lineno} reads the clock: {owner_name}.{node.attr}"
        )


def test_importing_the_core_loads_no_event_loop_or_io_library() -> None:
    """In a fresh interpreter, past ``mesh/__init__.py`` (which exports the asyncio node)."""
    code = textwrap.dedent(
        f"""
        import sys, types
        package = types.ModuleType("mesh")
        package.__path__ = [{str(MESH)!r}]
        sys.modules["mesh"] = package
        import mesh.core
        loaded = sorted(
            m for m in sys.modules
            if m.split(".")[0] in {{"asyncio", "aiohttp", "zeroconf", "uvloop", "ifaddr"}}
            or m.startswith(("mesh.node", "mesh.client", "mesh.discovery", "aioquic.asyncio"))
        )
        print(",".join(loaded))
        """
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert result.stdout.strip() == ""
