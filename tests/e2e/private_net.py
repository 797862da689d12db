"""A network namespace with nothing but its own loopback: the fixed ports a user types
(8888, 9000) are free there, and nothing a test starts in it can reach the host's network.

``with PrivateNet() as net:`` creates it (``ip netns add``, loopback up) and, on
exit, kills every process still inside and deletes it; namespaces left behind by a
test process that was killed are deleted by the next one. ``net.argv(...)`` is the
command line that runs a program inside (``ip netns exec`` execs it, so the
process id is the program's). Needs root and iproute2: :func:`unavailable`
says why not, for ``pytest.skip``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess

__all__ = ["PrivateNet", "unavailable"]


def unavailable() -> str | None:
    """Why a private network namespace cannot be made here, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    return None


class PrivateNet:
    """A throw-away network namespace with only ``lo`` (127.0.0.1, ::1) up."""

    def __init__(self) -> None:
        self.name = f"shp{os.getpid()}-{secrets.token_hex(3)}"

    def __enter__(self) -> PrivateNet:
        _remove_stale()
        _ip("netns", "add", self.name)
        try:
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def close(self) -> None:
        """Kill what still runs inside, then delete the namespace."""
        pids = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False)


def _remove_stale() -> None:
    """Delete namespaces left by a test process that is gone (killed before cleaning up)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    for line in listed.stdout.splitlines():
        name = line.split(" ", 1)[0]
        pid = name[3:].split("-", 1)[0]
        if name.startswith("shp") and pid.isdigit() and not _alive(int(pid)):
            stale = PrivateNet.__new__(PrivateNet)
            stale.name = name
            stale.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
