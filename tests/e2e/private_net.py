"""A network namespace with nothing but its own loopback: the fixed ports a user types
(8888, 9000) are free there, and nothing a test starts in it can reach the host's network.

``with PrivateNet() as net:`` creates it (``ip netns add``, loopback up) and, on
exit, kills every process still inside and deletes it. ``net.argv(...)`` is the
command line that runs a program inside (``ip netns exec`` execs it, so the
process id is the program's). Its name follows ``tests/mesh/netns.py``
(``shl<pid>-<hex>-lo``), so a namespace left behind by a test process that was
killed is deleted by the next one. :func:`unavailable` says why it cannot be
made here (not root, no iproute2), for ``pytest.skip``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess

from tests.mesh.netns import Namespaces, netns_unavailable_reason, remove_stale_namespaces, run_ip

__all__ = ["PrivateNet", "unavailable"]


def unavailable() -> str | None:
    """Why a private network namespace cannot be made here, or None."""
    return netns_unavailable_reason()


class PrivateNet(Namespaces):
    """A throw-away network namespace with only ``lo`` (127.0.0.1, ::1) up."""

    def __init__(self) -> None:
        self.name = f"shl{os.getpid()}-{secrets.token_hex(3)}-lo"

    def create(self) -> None:
        remove_stale_namespaces()
        run_ip("netns", "add", self.name)
        run_ip("-n", self.name, "link", "set", "lo", "up")

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
