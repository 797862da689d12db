"""Opt-in test marks: tests under one directory carrying a mark run only when asked for.

A conftest makes one :class:`OptInMark` and calls it from its
``pytest_collection_modifyitems`` and ``pytest_terminal_summary`` hooks: without
``-m <mark>`` in the mark expression the marked tests under that directory are
deselected, and the terminal summary says how many and how to run them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["OptInMark"]


@dataclass(frozen=True)
class OptInMark:
    """Leave out tests marked ``mark`` under ``under`` unless ``-m`` names the mark.

    ``summary`` is the terminal line, formatted with ``n`` (how many were left out).
    """

    mark: str
    under: Path
    summary: str
    _left_out: pytest.StashKey[int] = field(default_factory=pytest.StashKey[int])

    def deselect(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """Drop the marked tests under ``under`` from ``items`` (reported as deselected)."""
        if self.mark in (config.option.markexpr or ""):
            return
        left = [
            i
            for i in items
            if i.get_closest_marker(self.mark) is not None and self.under in i.path.parents
        ]
        if left:
            config.hook.pytest_deselected(items=left)
            gone = set(left)
            items[:] = [i for i in items if i not in gone]
            config.stash[self._left_out] = len(left)

    def summarize(self, terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
        """Say how many tests :meth:`deselect` left out and how to run them, if any."""
        left_out = config.stash.get(self._left_out, 0)
        if left_out:
            terminalreporter.write_line(self.summary.format(n=left_out))
