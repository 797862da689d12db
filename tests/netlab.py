"""A NAT lab made of network namespaces: an "internet", home routers, hosts behind them.

Topology (every link is created inside the lab's own namespaces, so the host's
interfaces are never touched)::

    internet namespace: bridge br0 = 100.64.0.10/24  (servers run here)
      |-- router r0: wan 100.64.0.2 -- masquerade -- bridge lan 10.1.0.1/24 -- hosts 10.1.0.10...
      |-- router r1: wan 100.64.0.3 -- masquerade -- bridge lan 10.2.0.1/24 -- hosts 10.2.0.10...

A router forwards (``ip_forward=1``) and runs nftables:

- ``cone``: ``masquerade`` out of ``wan``. Linux keeps the source port when it
  is free, so one mapping serves every destination (endpoint-independent
  mapping, address-and-port-dependent filtering: the common home router);
- ``symmetric``: ``masquerade fully-random``, a new random port per
  destination (endpoint-dependent mapping, as carrier-grade NATs often do);
- both drop new inbound connections on ``wan`` addressed to the router itself
  (``iifname wan ct state new drop``), as home routers do. Without it, a punch
  packet reaching the router before its host's own outbound packet creates a
  conntrack entry for the router, and the host's packet is then mapped to
  another port;
- a forward-chain drop for the addresses in the set ``cut``: :meth:`NatLab.cut`
  and :meth:`NatLab.restore` add and remove one to cut a path mid-game.

The lab is a :class:`tests.mesh.netns.NetnsLan` without nodes (its bridge
namespace is the internet) with the routers and hosts registered in it, so it
shares that module's naming (``shl<pid>-<hex>-<role>``: runs never collide, and a
later run deletes what a crashed run left behind) and its teardown:
:meth:`NatLab.close` kills every process started in the lab and deletes every
namespace, whatever state the setup reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from tests.mesh.netns import (
    REPO_ROOT,
    Namespaces,
    NetnsLan,
    NetnsNode,
    netns_unavailable_reason,
    run_ip,
)

__all__ = ["Agent", "Host", "NatLab", "NatType", "Router", "natlab_unavailable_reason"]

INTERNET_PREFIX = "100.64.0"
SERVER_ADDRESS = f"{INTERNET_PREFIX}.10"


def natlab_unavailable_reason(*, turn: bool = False) -> str | None:
    """Why the NAT lab cannot run here (root, ``ip``, ``nft``; ``turnserver`` if asked)."""
    reason = netns_unavailable_reason()
    if reason is not None:
        return reason
    if shutil.which("nft") is None:
        return "nftables (`nft`) is not installed"
    if turn and shutil.which("turnserver") is None:
        return "coturn (`turnserver`) is not installed"
    return None


class NatType(StrEnum):
    CONE = "cone"
    SYMMETRIC = "symmetric"


@dataclass
class Router:
    namespace: str
    wan_address: str
    lan_prefix: str  # "10.1.0"
    nat: NatType
    hosts: int = 0


@dataclass
class Host:
    namespace: str
    address: str
    router: Router


@dataclass
class Agent:
    """A process in a namespace that talks JSON lines (``tests.netlab_agent`` or any)."""

    process: asyncio.subprocess.Process
    label: str
    lines: list[str] = field(default_factory=list)

    async def read(self, within: float = 20) -> Any:
        """The next JSON line on stdout (a clear error if the process ends first)."""
        return json.loads(await self.read_text(within))

    async def read_text(self, within: float = 20) -> str:
        """The next line on stdout, without its newline."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not line:
            stderr = b""
            if self.process.stderr is not None:
                with contextlib.suppress(TimeoutError):
                    stderr = await asyncio.wait_for(self.process.stderr.read(), 5)
            raise AssertionError(f"{self.label} ended: {stderr.decode(errors='replace')[-2000:]}")
        self.lines.append(line.decode())
        return line.decode().rstrip("\n")

    def write(self, value: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(value).encode() + b"\n")

    async def wait(self, within: float = 20) -> int:
        return await asyncio.wait_for(self.process.wait(), within)


class NatLab(Namespaces):
    """``with NatLab() as lab:`` (or ``async with``); then :meth:`add_router`, :meth:`add_host`.

    Built on :class:`tests.mesh.netns.NetnsLan` with no nodes: its bridge namespace
    is the internet, and every router and host namespace is registered with it, so
    its stale cleanup, process reaping and namespace removal cover the whole lab.
    """

    def __init__(self) -> None:
        self._lan = NetnsLan(0)
        self.tag = self._lan.tag
        self.internet = self._lan.bridge_namespace
        self.server_address = SERVER_ADDRESS
        self.routers: list[Router] = []
        self.hosts: list[Host] = []
        self._members: dict[str, NetnsNode] = {}

    # -- lifecycle ----------------------------------------------------------------------

    def create(self) -> None:
        """The internet namespace with its bridge (after removing stale labs)."""
        self._lan.create()
        self._register(self.internet, SERVER_ADDRESS)
        run_ip("-n", self.internet, "addr", "add", f"{SERVER_ADDRESS}/24", "dev", "br0")

    def close(self) -> None:
        """Kill what runs in the lab and delete every namespace it made. Never raises."""
        self._lan.close()

    async def reap(self) -> None:
        await self._lan.reap()

    def add_router(self, nat: NatType | str) -> Router:
        """A home router on the internet bridge with its own LAN bridge behind it."""
        index = len(self.routers)
        router = Router(
            f"{self.tag}-r{index}",
            f"{INTERNET_PREFIX}.{index + 2}",
            f"10.{index + 1}.0",
            NatType(nat),
        )
        ns = router.namespace
        self._add_namespace(ns, router.wan_address)
        _veth(self.internet, f"r{index}", "br0", ns, "wan", f"{router.wan_address}/24")
        run_ip("-n", ns, "link", "add", "lan", "type", "bridge")
        run_ip("-n", ns, "addr", "add", f"{router.lan_prefix}.1/24", "dev", "lan")
        run_ip("-n", ns, "link", "set", "lan", "up")
        _in(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        masquerade = "masquerade fully-random" if router.nat is NatType.SYMMETRIC else "masquerade"
        _in(ns, "nft", "-f", "-", stdin=_RULESET.format(masquerade=masquerade))
        self.routers.append(router)
        return router

    def add_host(self, router: Router) -> Host:
        """A host on ``router``'s LAN (default route through it)."""
        index = router.hosts
        router.hosts += 1
        host = Host(f"{router.namespace}-h{index}", f"{router.lan_prefix}.{index + 10}", router)
        ns = host.namespace
        self._add_namespace(ns, host.address)
        _veth(router.namespace, f"h{index}", "lan", ns, "eth0", f"{host.address}/24")
        run_ip("-n", ns, "route", "add", "default", "via", f"{router.lan_prefix}.1")
        self.hosts.append(host)
        return host

    def cut(self, router: Router, address: str) -> None:
        """Drop everything ``router`` forwards to or from ``address`` (until :meth:`restore`)."""
        _in(router.namespace, "nft", "add", "element", "ip", "filter", "cut", f"{{ {address} }}")

    def restore(self, router: Router, address: str) -> None:
        _in(router.namespace, "nft", "delete", "element", "ip", "filter", "cut", f"{{ {address} }}")

    def ruleset(self, router: Router) -> str:
        """The router's nftables ruleset as ``nft list ruleset`` prints it."""
        return _in(router.namespace, "nft", "list", "ruleset")

    # -- processes ------------------------------------------------------------------------

    async def spawn(
        self, namespace: str, argv: Sequence[str], *, label: str = "", python: bool = True
    ) -> Agent:
        """Start ``python argv`` (or ``argv`` itself) in ``namespace``, from the repository root.

        The process is reaped and killed with the lab.
        """
        member = self._members[namespace]
        if python:
            process = await self._lan.spawn(member, argv)
        else:
            process = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", namespace, *argv,
                cwd=REPO_ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )  # fmt: skip
            member.processes.append(process)
        return Agent(process, label or f"{argv[:2]} in {namespace}")

    async def coturn(self, secret: str, port: int, state_dir: Path) -> Agent:
        """coturn on the lab's server address, UDP only, for TURN REST credentials made with
        ``secret``; its pid file, database and log in ``state_dir``."""
        ip = self.server_address
        return await self.spawn(
            self.internet,
            [
                "turnserver",
                "-n",
                f"--listening-ip={ip}",
                f"--relay-ip={ip}",
                f"--listening-port={port}",
                "--use-auth-secret",
                f"--static-auth-secret={secret}",
                "--realm=shards",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--no-stdout-log",
                f"--pidfile={state_dir / 'turn.pid'}",
                f"--db={state_dir / 'turn.db'}",
                f"--log-file={state_dir / 'turn.log'}",
            ],  # fmt: skip
            python=False,
            label="coturn",
        )

    async def agent(self, namespace: str, *args: str) -> Agent:
        """``python -m tests.netlab_agent ARGS`` in ``namespace``."""
        return await self.spawn(
            namespace, ["-m", "tests.netlab_agent", *args], label=f"{args[0]}@{namespace}"
        )

    def _add_namespace(self, name: str, address: str) -> None:
        self._lan._add_namespace(name)
        self._register(name, address)

    def _register(self, name: str, address: str) -> None:
        member = NetnsNode(name, address)
        self._lan.nodes.append(member)
        self._members[name] = member


def _veth(
    namespace: str, port: str, bridge: str, peer_namespace: str, peer_name: str, address: str
) -> None:
    """A veth pair: ``port`` on ``bridge`` in ``namespace``, ``peer_name`` with ``address``."""
    run_ip(
        "-n", namespace, "link", "add", port, "type", "veth",
        "peer", "name", peer_name, "netns", peer_namespace,
    )  # fmt: skip
    run_ip("-n", namespace, "link", "set", port, "master", bridge)
    run_ip("-n", namespace, "link", "set", port, "up")
    run_ip("-n", peer_namespace, "addr", "add", address, "dev", peer_name)
    run_ip("-n", peer_namespace, "link", "set", peer_name, "up")


_RULESET = """
table ip nat {{
    chain post {{
        type nat hook postrouting priority 100; policy accept;
        oifname "wan" {masquerade}
    }}
}}
table ip filter {{
    set cut {{ type ipv4_addr; }}
    chain input {{
        type filter hook input priority 0; policy accept;
        iifname "wan" ct state new drop
    }}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        ip daddr @cut drop
        ip saddr @cut drop
    }}
}}
"""


def _in(namespace: str, *argv: str, stdin: str | None = None) -> str:
    """Run ``argv`` in ``namespace``; raise ``RuntimeError`` with its stderr if it fails."""
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} in {namespace} failed: {done.stderr.strip()}")
    return done.stdout
