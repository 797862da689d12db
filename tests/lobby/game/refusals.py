"""``refused(code)``: the rule tests' way of saying "this move is refused with that code"."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from protocol.errors import ErrorCode, GameRuleError

__all__ = ["refused"]


@contextlib.contextmanager
def refused(code: ErrorCode) -> Iterator[pytest.ExceptionInfo[GameRuleError]]:
    """The block must raise :class:`GameRuleError` carrying ``code`` (``as`` gives the error)."""
    with pytest.raises(GameRuleError) as exc:
        yield exc
    assert exc.value.code == code
