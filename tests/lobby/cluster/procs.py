"""Real servers for the cluster tests: redis-server, HAProxy and ``python -m lobby`` processes.

Each runs as a subprocess on 127.0.0.1 with a port of its own and is always torn
down (``stop()`` kills what is left; the fixtures call it in ``finally``).
Readiness is an event each program reports (redis' "Ready to accept connections"
line, the lobby's "lobby listening on" line, HAProxy answering a health-checked
request), waited for with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "HAProxy",
    "LobbyProcess",
    "RedisServer",
    "free_port",
    "missing_programs",
]

START_TIMEOUT = 30.0

PINNED = "/via/"
"""Path prefix of :meth:`HAProxy.pinned_url`: ``/via/lobby1/api/status`` is lobby1's
``/api/status``."""

FAST_LOBBY_ENV = {
    "SHARDS_ARGON2_TIME_COST": "1",
    "SHARDS_ARGON2_MEMORY_COST": "1024",
    "SHARDS_ARGON2_PARALLELISM": "1",
    "SHARDS_REST_RATE_PER_ADDRESS": "10000",
    "SHARDS_REST_BURST_PER_ADDRESS": "10000",
    "SHARDS_REST_RATE_PER_ACCOUNT": "10000",
    "SHARDS_REST_BURST_PER_ACCOUNT": "10000",
    "SHARDS_WS_CLOSE_TIMEOUT": "2",
    "SHARDS_CLUSTER_HEARTBEAT": "0.2",
    "SHARDS_CLUSTER_PRESENCE_TTL": "1.0",
    "SHARDS_MAINTENANCE_INTERVAL": "0.2",
    "SHARDS_METRICS_ENABLED": "false",
}


def missing_programs() -> list[str]:
    """The server programs these tests need that are not installed."""
    return [p for p in ("redis-server", "haproxy") if shutil.which(p) is None]


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_until(proc: subprocess.Popen[bytes], marker: bytes, what: str) -> bytes:
    """Read ``proc``'s stdout until a line containing ``marker`` (or fail on exit/timeout)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    seen = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while marker not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} did not start: {seen[-500:]!r}")
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"{what} exited ({proc.wait()}): {seen[-500:]!r}")
            seen += chunk
    return seen


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


class RedisServer:
    """``redis-server`` without persistence on 127.0.0.1:``port``."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, same_port: bool = False) -> RedisServer:
        """Start (``same_port``: again on the port it had, as a restarted Redis would)."""
        for _ in range(3):  # the free port may be taken meanwhile: try another
            if not (same_port and self.port):
                self.port = free_port()
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--daemonize", "no"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                _read_until(self.proc, b"Ready to accept connections", "redis-server")
                return self
            except RuntimeError:
                _stop(self.proc)
        raise RuntimeError("redis-server would not start")

    def stop(self) -> None:
        _stop(self.proc)


class LobbyProcess:
    """One ``python -m lobby --port 0`` subprocess; ``port`` is the one it bound."""

    def __init__(
        self, name: str, data_dir: Path, args: Sequence[str], env: Mapping[str, str]
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self._args = list(args)
        self._env = {**os.environ, **FAST_LOBBY_ENV, **env, "SHARDS_CLUSTER_PROCESS_ID": name}
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / f"{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LobbyProcess:
        """Spawn and wait until it listens (:meth:`spawn` then :meth:`ready`)."""
        return self.spawn().ready()

    def spawn(self) -> LobbyProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lobby", "--port", "0", "--data-dir", str(self.data_dir),
                 *self._args],
                stdout=subprocess.PIPE, stderr=log, env=self._env,
            )  # fmt: skip
        return self

    def ready(self) -> LobbyProcess:
        """Wait for its "lobby listening on" line; ``port`` is then the bound one."""
        assert self.proc is not None
        line = _read_until(self.proc, b"lobby listening on", f"lobby {self.name}")
        self.port = int(line.decode().strip().rsplit(":", 1)[1])
        return self

    def kill(self) -> None:
        """``kill -9``: no goodbye to Redis, the clients or the database."""
        _stop(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        _stop(self.proc)


class HAProxy:
    """HAProxy in front of lobby processes: WebSocket-aware, health checks on /api/status."""

    def __init__(
        self, work_dir: Path, backends: Sequence[LobbyProcess], *, maxconn: int = 4000
    ) -> None:
        self.work_dir = work_dir
        self.maxconn = maxconn  # HAProxy wants about 2 file descriptors per connection
        self.backends = list(backends)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pinned_url(self, backend: LobbyProcess) -> str:
        """A base URL through HAProxy whose every request goes to ``backend`` (while it is up:
        a test places its players on chosen processes; a real balancer spreads them)."""
        return f"{self.url}{PINNED}{backend.name}"

    def config(self) -> str:
        servers = "\n".join(f"    server {b.name} 127.0.0.1:{b.port} check" for b in self.backends)
        pins = "\n".join(
            f"    use-server {b.name} if {{ var(txn.pin) -m str {b.name} }}" for b in self.backends
        )
        return f"""global
    maxconn {self.maxconn}

defaults
    mode http
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # an upgraded WebSocket is a tunnel: idle up to this long
    timeout tunnel 1h
    # the client's address for the lobby's per-address limits (SHARDS_TRUST_FORWARDED_FOR)
    option forwardfor

frontend lobby
    bind 127.0.0.1:{self.port}
    default_backend lobbies

backend lobbies
    balance roundrobin
    option httpchk GET /api/status
    http-check expect status 200
    default-server inter 200ms fall 2 rise 1
    # {PINNED}<server>/...: to that server (while it is up), the prefix stripped
    http-request set-var(txn.pin) path,field(3,/) if {{ path_beg {PINNED} }}
    http-request set-path %[path,regsub(^{PINNED}[^/]+,)] if {{ path_beg {PINNED} }}
{pins}
{servers}
"""

    def start(self) -> HAProxy:
        for _ in range(3):
            self.port = free_port()
            cfg = self.work_dir / "haproxy.cfg"
            cfg.write_text(self.config())
            with (self.work_dir / "haproxy.log").open("ab") as log:
                self.proc = subprocess.Popen(
                    ["haproxy", "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=log
                )
            if self._answers():
                return self
            _stop(self.proc)
        log = (self.work_dir / "haproxy.log").read_text()
        raise RuntimeError(f"haproxy would not start: {log}")

    def _answers(self) -> bool:
        """Wait until the frontend forwards /api/status (or HAProxy exits)."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/api/status", timeout=2) as resp:  # noqa: S310
                    return bool(resp.status == 200)
            except OSError:
                # not listening yet: wait a moment, ending early if HAProxy exits
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(0.05)
        return False

    def stop(self) -> None:
        _stop(self.proc, signal.SIGUSR1)  # soft stop
