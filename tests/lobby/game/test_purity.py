"""The game rules stay pure: no I/O, no clock, no global random, only protocol and pydantic."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GAME = Path(__file__).parents[3] / "lobby" / "game"
ALLOWED_ROOTS = {
    "__future__",
    "collections",
    "dataclasses",
    "enum",
    "hashlib",
    "importlib",
    "json",
    "pathlib",
    "pydantic",
    "random",
    "typing",
    "lobby",
    "protocol",
}
CLOCK_CALLS = {("time", "time"), ("time", "monotonic"), ("datetime", "now"), ("loop", "time")}


def _modules() -> list[Path]:
    return sorted(GAME.glob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_imports_are_pure(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
        else:
            continue
        assert roots <= ALLOWED_ROOTS, f"{path.name} imports {roots - ALLOWED_ROOTS}"
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lobby"):
            assert node.module.startswith("lobby.game"), f"{path.name} imports {node.module}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_no_clock_and_no_global_random(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            pair = (node.value.id, node.attr)
            assert pair not in CLOCK_CALLS, f"{path.name} reads the clock: {pair}"
            if node.value.id == "random":
                assert node.attr == "Random", f"{path.name} uses the global random: {node.attr}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_module_shape(path: Path) -> None:
    text = path.read_text()
    tree = ast.parse(text)
    assert ast.get_docstring(tree), f"{path.name} has no docstring"
    assert "from __future__ import annotations" in text
    assert any(
        isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
        for n in tree.body
    ), f"{path.name} has no __all__"
    assert len(text.splitlines()) < 600
