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
  and :meth:`NatLab.restore` add and remove one to cut a path mid-game;
- :meth:`NatLab.block_udp` turns a router into a strict firewall: of what its
  hosts send, only TCP to the lobby passes (no UDP at all, so no STUN, no
  punching, no TURN).

Game players: :meth:`NatLab.lobby` starts ``python -m lobby`` (STUN on its port
number; with ``turn=True`` also coturn, and the lobby hands out its credentials)
in the internet namespace, and :meth:`NatLab.player` starts
``tests.netlab_player`` (a real :class:`mesh.NetworkClient` with its
``PeerNode``) on a host, driven through a :class:`LabPlayer`. :meth:`NatLab.homes`
and :meth:`NatLab.shared_home` build the usual topologies.

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
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
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

__all__ = [
    "Agent",
    "Host",
    "LabLobby",
    "LabPlayer",
    "NatLab",
    "NatType",
    "PlayerError",
    "Router",
    "natlab_unavailable_reason",
]

INTERNET_PREFIX = "100.64.0"
SERVER_ADDRESS = f"{INTERNET_PREFIX}.10"
LOBBY_PORT = 8888
"""The lobby's TCP port in the lab, and (by default) its STUN port on UDP."""
TURN_PORT = 3478
WAIT = 20.0
"""How long a lab helper waits for what it expects before it fails."""


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


class PlayerError(AssertionError):
    """A player's command failed: ``type`` and ``code`` of the client's exception."""

    def __init__(self, op: str, error: dict[str, Any]) -> None:
        super().__init__(f"{op}: {error.get('type')} ({error.get('code')}): {error.get('message')}")
        self.type = str(error.get("type"))
        self.code = error.get("code")


class LabLobby:
    """``python -m lobby`` in the internet namespace (and coturn beside it when asked).

    Its stderr is read as it comes (a long-lived lobby never blocks on a full
    pipe): :attr:`log` is what it wrote so far.
    """

    def __init__(
        self,
        agent: Agent,
        url: str,
        stun_port: int,
        turn_port: int | None,
        turn_secret: str | None,
    ) -> None:
        self.agent = agent
        self.url = url
        self.stun_port = stun_port
        self.turn_port = turn_port
        self.turn_secret = turn_secret
        self._log: list[str] = []
        self._drain = asyncio.create_task(self._read_stderr(), name="lobby stderr")

    @property
    def log(self) -> str:
        """What the lobby wrote on stderr so far."""
        return "".join(self._log)

    async def stop(self) -> None:
        """Kill the lobby (if it still runs) and finish reading its stderr."""
        _kill(self.agent.process)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain, WAIT)

    async def _read_stderr(self) -> None:
        stderr = self.agent.process.stderr
        assert stderr is not None
        while line := await stderr.readline():
            self._log.append(line.decode(errors="replace"))


class LabPlayer:
    """One ``tests.netlab_player`` process: a real ``NetworkClient`` on a lab host.

    ``await player.call(op, **args)`` runs one command and returns its result
    (:class:`PlayerError` when the client raised); ``await player.event(**fields)``
    waits for an event whose fields include ``fields`` (every event since the
    start counts, so nothing is missed between a command and the wait);
    :meth:`events` lists them. :meth:`close` quits and returns what the process
    wrote on stderr (its log).
    """

    def __init__(self, agent: Agent, host: Host, name: str) -> None:
        self.agent = agent
        self.host = host
        self.name = name
        self.character_id = 0
        self.location_id = 0
        self.stderr = ""
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._ended: str | None = None
        self._reader = asyncio.create_task(self._read(), name=f"player {name}")

    async def call(self, op: str, within: float = 30.0, **args: Any) -> Any:
        """Run ``op``; its result, or :class:`PlayerError` with the client's exception."""
        answer = await self.attempt(op, within, **args)
        if not answer["ok"]:
            raise PlayerError(op, answer["error"])
        return answer["result"]

    async def attempt(self, op: str, within: float = 30.0, **args: Any) -> dict[str, Any]:
        """Run ``op``; the raw answer (``ok``, then ``result`` or ``error``)."""
        if self._ended is not None:
            raise AssertionError(f"{self.name} ended: {self._ended}")
        ident = next(self._ids)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[ident] = reply
        self.agent.write({"id": ident, "op": op, **args})
        try:
            return await asyncio.wait_for(reply, within)
        finally:
            self._replies.pop(ident, None)

    async def play(self, name: str | None = None, **args: Any) -> dict[str, Any]:
        """Register, log in, create the character and select it (``play``)."""
        result: dict[str, Any] = await self.call("play", name=name or self.name, **args)
        self.character_id = int(result["character_id"])
        self.location_id = int(result["location_id"])
        return result

    def events(self, **fields: Any) -> list[dict[str, Any]]:
        """The events so far whose fields include ``fields``."""
        return [e for e in self._events if _matches(e, fields)]

    async def event(self, within: float = WAIT, **fields: Any) -> dict[str, Any]:
        """The first event whose fields include ``fields`` (waiting for it if needed)."""
        return (await self.wait_events(lambda found: len(found) >= 1, within, **fields))[0]

    async def wait_events(
        self, enough: Callable[[list[dict[str, Any]]], bool], within: float = WAIT, **fields: Any
    ) -> list[dict[str, Any]]:
        """The events matching ``fields`` once ``enough(events)`` holds."""

        async def until() -> list[dict[str, Any]]:
            while True:
                found = self.events(**fields)
                if enough(found):
                    return found
                if self._ended is not None:
                    raise AssertionError(f"{self.name} ended: {self._ended}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(until(), within)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: no events {fields} within {within} s; saw {self._events[-20:]}"
            ) from None

    async def close(self, within: float = WAIT) -> str:
        """Quit (disconnect), wait for the process; its stderr."""
        if self._ended is None and self.agent.process.returncode is None:
            with contextlib.suppress(AssertionError, TimeoutError, ConnectionError):
                await self.attempt("quit", within)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.agent.process.wait(), within)
        _kill(self.agent.process)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._reader, within)
        return self.stderr

    async def stop(self) -> None:
        """Kill the process (if it still runs) and finish reading its output."""
        _kill(self.agent.process)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._reader, WAIT)

    async def _read(self) -> None:
        stdout, stderr = self.agent.process.stdout, self.agent.process.stderr
        assert stdout is not None and stderr is not None
        errors = asyncio.create_task(stderr.read())
        try:
            while line := await stdout.readline():
                value = json.loads(line)
                ident = value.get("id")
                if ident is not None:
                    reply = self._replies.get(ident)
                    if reply is not None and not reply.done():
                        reply.set_result(value)
                else:
                    self._events.append(value)
                    self._changed.set()
        finally:
            self.stderr = (await errors).decode(errors="replace")
            self._ended = f"exit {await self.agent.process.wait()}: {self.stderr[-2000:]}"
            for reply in self._replies.values():
                if not reply.done():
                    reply.set_exception(AssertionError(f"{self.name} ended: {self._ended}"))
            self._changed.set()


def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL ``process`` and its session (what ``ip netns exec`` started), if it runs."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _matches(event: dict[str, Any], fields: dict[str, Any]) -> bool:
    return all(event.get(key) == value for key, value in fields.items())


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
        self._readers: list[LabLobby | LabPlayer] = []
        """Lobbies and players whose output a task reads: stopped first on exit."""

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
        """Stop the lobbies and players (their reading tasks end), then reap every process."""
        readers, self._readers = self._readers, []
        await asyncio.gather(*(reader.stop() for reader in readers))
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

    def homes(self, *nats: NatType | str) -> list[Host]:
        """One host behind a router of its own for each NAT type (each player at home)."""
        return [self.add_host(self.add_router(nat)) for nat in nats]

    def shared_home(self, count: int, nat: NatType | str = NatType.CONE) -> list[Host]:
        """``count`` hosts behind one router (players on one home network)."""
        router = self.add_router(nat)
        return [self.add_host(router) for _ in range(count)]

    def cut(self, router: Router, address: str) -> None:
        """Drop everything ``router`` forwards to or from ``address`` (until :meth:`restore`)."""
        _in(router.namespace, "nft", "add", "element", "ip", "filter", "cut", f"{{ {address} }}")

    def restore(self, router: Router, address: str) -> None:
        _in(router.namespace, "nft", "delete", "element", "ip", "filter", "cut", f"{{ {address} }}")

    def block_udp(self, router: Router, lobby_port: int = LOBBY_PORT) -> None:
        """Of what ``router``'s hosts send out, let only TCP to the lobby pass (no UDP at all).

        Replies to it come back (``ct state established``); nothing else leaves.
        """
        rules = f"""
table ip filter {{
    chain forward {{
        iifname "lan" ip daddr {self.server_address} tcp dport {lobby_port} accept
        iifname "lan" drop
    }}
}}
"""
        _in(router.namespace, "nft", "-f", "-", stdin=rules)

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

    async def lobby(
        self,
        data_dir: Path,
        *,
        port: int = LOBBY_PORT,
        turn: bool = False,
        turn_port: int = TURN_PORT,
        options: Sequence[str] = (),
    ) -> LabLobby:
        """``python -m lobby`` on the server address: REST/WS on ``port``, STUN on UDP ``port``.

        Cheap password hashing and no REST or chat limits in the way. With
        ``turn``, coturn runs on ``turn_port`` (state in ``data_dir``) and the
        lobby issues its time-limited credentials (``--turn-url``, ``--turn-secret``).
        """
        await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
        secret: str | None = None
        argv = [
            "env",
            "SHARDS_ARGON2_TIME_COST=1",
            "SHARDS_ARGON2_MEMORY_COST=1024",
            "SHARDS_ARGON2_PARALLELISM=1",
            "SHARDS_HASH_POOL=thread",
            sys.executable, "-m", "lobby",
            "--host", self.server_address,
            "--port", str(port),
            "--data-dir", str(data_dir),
            "--rest-rate-per-address", "10000", "--rest-burst-per-address", "10000",
            "--rest-rate-per-account", "10000", "--rest-burst-per-account", "10000",
            "--chat-rate", "1000", "--chat-burst", "1000",
            "--pair-rate", "1000", "--pair-burst", "1000",
        ]  # fmt: skip
        if turn:
            secret = os.urandom(16).hex()
            await self.coturn(secret, turn_port, data_dir)
            await self.until_stun_answers(self.server_address, turn_port)
            argv += [
                "--turn-url", f"turn:{self.server_address}:{turn_port}?transport=udp",
                "--turn-secret", secret,
            ]  # fmt: skip
        agent = await self.spawn(self.internet, [*argv, *options], python=False, label="lobby")
        line = await agent.read_text(30)
        assert line.startswith("lobby listening on"), line
        lobby = LabLobby(
            agent,
            f"http://{self.server_address}:{port}",
            port,
            turn_port if turn else None,
            secret,
        )
        self._readers.append(lobby)
        return lobby

    async def player(
        self,
        host: Host,
        lobby: LabLobby,
        name: str,
        *,
        p2p_host: str = "0.0.0.0",  # noqa: S104 - inside the host's namespace
        p2p_port: int = 0,
        mesh: dict[str, Any] | None = None,
    ) -> LabPlayer:
        """A ``NetworkClient`` on ``host`` (``tests.netlab_player``), logged out; call
        :meth:`LabPlayer.play` to register, log in and select a character named ``name``.

        ``mesh``: :class:`mesh.MeshConfig` fields over the player's fast defaults
        (1 s dial timeout, 0.5 s relay resend).
        """
        config = {"p2p_host": p2p_host, "p2p_port": p2p_port, "mesh": mesh or {}}
        agent = await self.spawn(
            host.namespace,
            ["-m", "tests.netlab_player", lobby.url, json.dumps(config)],
            label=f"{name}@{host.namespace}",
        )
        assert await agent.read(30) == {"event": "ready"}
        player = LabPlayer(agent, host, name)
        self._readers.append(player)
        return player

    async def until_stun_answers(self, host: str, port: int, attempts: int = 10) -> None:
        """Wait until ``host:port`` answers a STUN Binding from the internet namespace
        (coturn prints no "ready" line)."""
        for _ in range(attempts):
            probe = await self.agent(self.internet, "probe", self.server_address, host, str(port))
            if await probe.wait(30) == 0:
                return
        raise AssertionError(f"nothing answers STUN on {host}:{port}")

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
