"""The argon2id work itself, and the worker process that does it for the lobby.

``hash_password`` and ``verify_password`` are what a hashing worker runs, in a thread
or in a process. As a program (``python -P lobby/_hashworker.py NICE CPUS``, started by
:mod:`lobby.passwords`) it lowers its own priority by ``NICE``, keeps to ``CPUS`` (a
comma-separated list, empty: any), then answers one request a line on stdin with one
answer a line on stdout, JSON both:

- ``["hash", [time_cost, memory_cost, parallelism], password]`` -> ``{"ok": "$argon2id$..."}``
- ``["verify", [time_cost, memory_cost, parallelism], hash, password]`` -> ``{"ok": true}``
- anything it cannot do -> ``{"error": "..."}``

It exits when stdin closes: the lobby closing the pool, or the lobby dying (it ignores
SIGINT and SIGTERM). It is run
by path, not as ``-m lobby._hashworker``, so it imports argon2 and nothing of the lobby,
and ``-P`` keeps this directory (whose ``http`` package would shadow the standard
library's) off its import path.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["Params", "hash_password", "lower_priority", "main", "verify_password"]

Params = tuple[int, int, int]
"""argon2 (time cost, memory cost in KiB, parallelism)."""


@lru_cache(maxsize=8)
def hasher_for(params: Params) -> PasswordHasher:
    """The argon2id hasher of ``params`` (a hasher holds only its parameters)."""
    time_cost, memory_cost, parallelism = params
    return PasswordHasher(
        time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
    )


def _secret(password: str) -> bytes:
    # "surrogatepass": a JSON body may carry a lone surrogate ("\ud800"), which strict
    # UTF-8 refuses; any other string encodes exactly as argon2-cffi would encode it.
    return password.encode("utf-8", "surrogatepass")


def hash_password(params: Params, password: str) -> str:
    """The argon2id hash of ``password``."""
    return hasher_for(params).hash(_secret(password))


def verify_password(params: Params, password_hash: str, password: str) -> bool:
    """True if ``password`` matches ``password_hash``; False for a mismatch or a malformed
    hash (an answer, not an error: nothing to carry back across a pipe)."""
    try:
        return hasher_for(params).verify(password_hash, _secret(password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def lower_priority(nice: int, cpus: Sequence[int]) -> None:
    """This thread, and the lane threads argon2 starts from it, run ``nice`` nicer and on
    ``cpus`` only (all CPUs when empty). Linux priorities and affinities are per thread."""
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
    except (AttributeError, OSError):  # not Linux, or not permitted: normal priority
        pass
    if cpus:
        try:
            os.sched_setaffinity(tid, cpus)
        except (AttributeError, OSError):
            pass


def _answer(request: list[object]) -> object:
    op, raw_params, *args = request
    if not isinstance(raw_params, list) or len(raw_params) != 3:
        raise ValueError("params must be [time_cost, memory_cost, parallelism]")
    params: Params = (int(raw_params[0]), int(raw_params[1]), int(raw_params[2]))
    if op == "hash" and len(args) == 1 and isinstance(args[0], str):
        return hash_password(params, args[0])
    if op == "verify" and len(args) == 2 and all(isinstance(a, str) for a in args):
        return verify_password(params, str(args[0]), str(args[1]))
    raise ValueError(f"unknown request {op!r}")


def main(argv: Sequence[str]) -> int:
    """Serve requests from stdin until it closes (see the module docstring)."""
    # The lobby decides when this process ends (by closing stdin), not a signal meant
    # for the lobby's whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    nice, cpus = int(argv[0]), [int(c) for c in argv[1].split(",") if c]
    lower_priority(nice, cpus)
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            reply: dict[str, object] = {"ok": _answer(json.loads(line))}
        except Exception as exc:  # noqa: BLE001 - every failure is an answer to the lobby
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply).encode() + b"\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
