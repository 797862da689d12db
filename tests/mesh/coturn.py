"""A real coturn (``turnserver``) on loopback for the TURN path tests, with REST credentials.

``async with LoopbackTurn(tmp_path) as turn:`` starts coturn on 127.0.0.1 on a free
UDP port with ``use-auth-secret`` (the scheme the lobby issues credentials in) and
``allow-loopback-peers`` (the peers are on 127.0.0.1 too), waits until it answers
a STUN Binding, and stops it on exit. :meth:`LoopbackTurn.credentials` mints a
time-limited username/password as the lobby does. Tests skip when ``turnserver``
is missing (:data:`COTURN_MISSING`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import time
from pathlib import Path

from mesh.stun_client import BindingSucceeded, Retransmission, StunClient
from protocol.turn import TurnRestCredentials, turn_rest_credentials

__all__ = ["COTURN_MISSING", "LoopbackTurn"]

COTURN_MISSING = shutil.which("turnserver") is None


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Probe(asyncio.DatagramProtocol):
    def __init__(self, client: StunClient, answered: asyncio.Future[bool]) -> None:
        self.client = client
        self.answered = answered

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client.receive_datagram(data, addr, asyncio.get_running_loop().time())
        if isinstance(self.client.next_event(), BindingSucceeded) and not self.answered.done():
            self.answered.set_result(True)


class LoopbackTurn:
    """coturn on 127.0.0.1 for one test (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.secret = os.urandom(16).hex()
        self.address = ("127.0.0.1", _free_udp_port())
        self._process: asyncio.subprocess.Process | None = None

    def credentials(self, user: str, ttl: float = 600.0) -> TurnRestCredentials:
        return turn_rest_credentials(self.secret, user, now=time.time(), ttl=ttl)

    async def __aenter__(self) -> LoopbackTurn:
        host, port = self.address
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            "turnserver", "-n",
            f"--listening-ip={host}", f"--relay-ip={host}", f"--listening-port={port}",
            "--use-auth-secret", f"--static-auth-secret={self.secret}", "--realm=shards",
            # UDP only: the port is free for UDP, its TCP twin may not be (coturn then keeps
            # retrying that bind and does not answer at all)
            "--no-tcp", "--no-tls", "--no-dtls",
            "--allow-loopback-peers", "--no-cli", "--no-stdout-log",
            f"--pidfile={self.state_dir / 'turn.pid'}", f"--db={self.state_dir / 'turn.db'}",
            f"--log-file={self.state_dir / 'turn.log'}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            await self._until_it_answers()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()

    async def _until_it_answers(self, within: float = 20.0) -> None:
        """One Binding transaction at a time until coturn answers (it prints no 'ready')."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            assert self._process is not None
            if self._process.returncode is not None:
                raise RuntimeError(f"turnserver exited with {self._process.returncode}")
            client = StunClient(Retransmission(0.1, 3, 2))
            answered: asyncio.Future[bool] = loop.create_future()
            probe = _Probe(client, answered)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: probe,  # noqa: B023 - used before the next iteration
                local_addr=("127.0.0.1", 0),
            )
            try:
                client.request(self.address, loop.time())
                for data, dest in client.datagrams_to_send(loop.time()):
                    transport.sendto(data, dest)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answered, 0.3)
                    return
            finally:
                transport.close()
        raise RuntimeError(f"coturn on {self.address} does not answer STUN")

    async def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
