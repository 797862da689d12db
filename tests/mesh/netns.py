"""A throw-away LAN made of network namespaces, for real multicast tests.

:class:`NetnsLan` creates a bridge namespace holding a Linux bridge, and N node
namespaces, each with one veth link (``eth0`` inside) plugged into the bridge
and an address of a private /24. Every link is created *inside* the test's
namespaces (``ip -n NS link add ... peer ... netns OTHER``): the host's own
interfaces are never touched, and multicast sent in a node namespace can only
reach the bridge and the other nodes.

Names carry the creating process id and a random suffix
(``shl<pid>-<hex>-<role>``), so parallel runs never collide, and a later run
deletes namespaces left behind by a run whose process is gone.
:meth:`NetnsLan.close` kills every process started with :meth:`NetnsLan.spawn`
and deletes every namespace (and with them the links and the bridge),
whatever state the setup reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

__all__ = ["Namespaces", "NetnsLan", "NetnsNode", "netns_unavailable_reason", "run_ip"]

_PREFIX = "shl"
REPO_ROOT = Path(__file__).resolve().parents[2]


def netns_unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespace tests need root (ip netns add)"
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns` is unavailable: {probe.stderr.strip()}"
    return None


def run_ip(*args: str) -> str:
    """Run ``ip ARGS``; raise ``RuntimeError`` with its stderr if it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


@dataclass
class NetnsNode:
    """One node namespace: its name and the address of its ``eth0``."""

    namespace: str
    address: str
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)


class Namespaces(ABC):
    """Network namespaces made on entry (``with`` or ``async with``) and removed on exit.

    A subclass makes them in :meth:`create` and removes them in :meth:`close`, which
    must also undo a :meth:`create` that failed part way, and never raise; one that
    starts processes waits for them in :meth:`reap` (the async form calls it first).
    """

    @abstractmethod
    def create(self) -> None:
        """Make the namespaces."""

    @abstractmethod
    def close(self) -> None:
        """Kill what runs inside and delete every namespace made. Never raises."""

    async def reap(self) -> None:  # noqa: B027 - optional: a set with no processes has none
        """Wait for the processes started inside (read their pipes to the end)."""

    def __enter__(self) -> Self:
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.reap()
        finally:
            self.close()


class NetnsLan(Namespaces):
    """``count`` namespaces on one bridge; ``async with NetnsLan(3) as lan: ...``.

    The async form also reaps the spawned processes and closes their pipes.
    """

    def __init__(self, count: int) -> None:
        self.tag = f"{_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        subnet = secrets.randbelow(200) + 20
        self.bridge_namespace = f"{self.tag}-br"
        self.nodes = [
            NetnsNode(f"{self.tag}-n{i}", f"10.213.{subnet}.{i + 10}") for i in range(count)
        ]
        self._created: list[str] = []

    async def reap(self) -> None:
        """Kill every spawned process and wait for it, reading its pipes to the end."""
        for node in self.nodes:
            for process in node.processes:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                if process.stdin is not None:
                    process.stdin.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(process.communicate(), 10)

    def create(self) -> None:
        """Build the namespaces, links and bridge (after removing stale ones)."""
        remove_stale_namespaces()
        br = self.bridge_namespace
        self._add_namespace(br)
        run_ip("-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        run_ip("-n", br, "link", "set", "br0", "up")
        for index, node in enumerate(self.nodes):
            self._add_namespace(node.namespace)
            port = f"v{index}"
            run_ip(
                "-n", br, "link", "add", port, "type", "veth",
                "peer", "name", "eth0", "netns", node.namespace,
            )  # fmt: skip
            run_ip("-n", br, "link", "set", port, "master", "br0")
            run_ip("-n", br, "link", "set", port, "up")
            run_ip("-n", node.namespace, "addr", "add", f"{node.address}/24", "dev", "eth0")
            run_ip("-n", node.namespace, "link", "set", "eth0", "up")

    async def spawn(
        self, node: NetnsNode, argv: Sequence[str], *, stdin: bool = True
    ) -> asyncio.subprocess.Process:
        """Start ``python argv...`` inside ``node``'s namespace, from the repository root."""
        process = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            node.namespace,
            sys.executable,
            *argv,
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        node.processes.append(process)
        return process

    def close(self) -> None:
        """Kill spawned processes, delete every namespace this lab made. Never raises."""
        for node in self.nodes:
            for process in node.processes:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
        for namespace in self._namespace_pids():
            _kill_namespace_processes(namespace)
        for namespace in reversed(self._created):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        self._created.clear()

    def _add_namespace(self, name: str) -> None:
        run_ip("netns", "add", name)
        self._created.append(name)
        run_ip("-n", name, "link", "set", "lo", "up")

    def _namespace_pids(self) -> list[str]:
        return list(self._created)


def _kill_namespace_processes(namespace: str) -> None:
    pids = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.kill(int(pid), signal.SIGKILL)


def remove_stale_namespaces() -> None:
    """Delete namespaces of earlier runs whose creating process no longer exists."""
    listing = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(_PREFIX):
            continue
        pid_text = name[len(_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        _kill_namespace_processes(name)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
