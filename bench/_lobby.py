"""The product's lobby in a child process, and accounts made over its REST API.

``lobby_child`` starts ``lobby.MasterServer`` on 127.0.0.1 port 0 with a temporary data
directory and the given settings, announces its port and answers "usage" until "stop".
Benchmarks raise the per-address limits (all their load comes from 127.0.0.1, where a real
lobby sees thousands of addresses) and, where hashing is not what they measure, lower the
argon2 cost the way the lobby's own tests do; each benchmark's notes say which.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from bench._common import Skip
from bench._proc import Child

__all__ = [
    "BENCH_LIMITS",
    "FAST_HASH",
    "accounts_child",
    "lobby_child",
    "lobby_skip_reason",
    "make_accounts",
    "make_character",
    "PASSWORD",
    "start_lobby",
]

#: Per-address and per-account limits out of the way: every benchmark client is 127.0.0.1.
BENCH_LIMITS: dict[str, Any] = {
    "rest_rate_per_address": 1e9,
    "rest_burst_per_address": 1e9,
    "rest_rate_per_account": 1e9,
    "rest_burst_per_account": 1e9,
    "login_max_failures_per_address": 1_000_000,
    "http_max_connections_per_address": 0,  # thousands of sockets from 127.0.0.1
}

#: The argon2 cost the lobby's tests use, for benchmarks that do not measure hashing.
FAST_HASH: dict[str, Any] = {
    "argon2_time_cost": 1,
    "argon2_memory_cost": 1024,
    "argon2_parallelism": 1,
}


def lobby_skip_reason() -> str | None:
    """Why the lobby benchmarks cannot measure the product yet (None: they can)."""
    try:
        import lobby
    except ImportError as exc:
        return f"lobby does not import ({exc})"
    if not hasattr(lobby, "MasterServer"):
        return "lobby.MasterServer has not landed yet"
    return None


def _server_port(server: Any) -> int:
    for attr in ("port", "bound_port"):
        value = getattr(server, attr, None)
        if isinstance(value, int) and value:
            return value
    url = getattr(server, "url", None)
    if isinstance(url, str) and url.rsplit(":", 1)[-1].strip("/").isdigit():
        return int(url.rsplit(":", 1)[-1].strip("/"))
    raise Skip("cannot tell which port MasterServer bound")


async def lobby_child(ctl: Any, settings: dict[str, Any], data_dir: str | None = None) -> None:
    """Child body: a MasterServer with ``settings`` on ``data_dir`` (default: a temporary one)."""
    import logging

    from lobby import MasterServer

    logging.getLogger("lobby").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="shards-bench-") as tmp:
        from lobby import LobbySettings

        server = MasterServer(
            host="127.0.0.1",
            port=0,
            data_dir=data_dir or tmp,
            settings=LobbySettings(**settings),
        )
        await server.start()
        try:
            ctl.send(("ready", _server_port(server)))
            await ctl.serve({})
        finally:
            await server.stop()


def start_lobby(
    settings: dict[str, Any], kind: str, nofile: int = 0, data_dir: str | None = None
) -> tuple[Child, int]:
    """A lobby child and its port (``data_dir``: keep its database there, across restarts)."""
    child = Child(lobby_child, settings, data_dir, kind=kind, nofile=nofile, name="lobby")
    try:
        _, port = child.recv(60)
    except BaseException:
        child.close()
        raise
    return child, int(port)


async def accounts_child(ctl: Any, port: int) -> None:
    """Child body: "make" {prefix, count, password, concurrency} -> list of session tokens."""
    import aiohttp

    ctl.send(("ready", None))
    base = f"http://127.0.0.1:{port}"

    async def make(arg: dict[str, Any]) -> list[str]:
        sem = asyncio.Semaphore(arg.get("concurrency", 8))
        limit = aiohttp.TCPConnector(limit=arg.get("concurrency", 8))
        async with aiohttp.ClientSession(connector=limit) as http:
            per = arg.get("sessions_per_account", 1)

            async def one(i: int) -> list[str]:
                creds = {"username": f"{arg['prefix']}{i}", "password": arg["password"]}
                tokens: list[str] = []
                async with sem:
                    async with http.post(f"{base}/api/auth/register", json=creds) as resp:
                        if resp.status >= 400 and resp.status != 409:
                            raise RuntimeError(f"register: {resp.status} {await resp.text()}")
                    for _ in range(per):
                        async with http.post(f"{base}/api/auth/login", json=creds) as resp:
                            body = await resp.json()
                            if resp.status >= 400:
                                raise RuntimeError(f"login: {resp.status} {body}")
                        token = body.get("token")
                        if not isinstance(token, str):
                            raise RuntimeError(f"login answered no token: {body}")
                        tokens.append(token)
                return tokens

            done = await asyncio.gather(*(one(i) for i in range(arg["count"])))
            return [token for tokens in done for token in tokens]

    async def character(arg: dict[str, Any]) -> dict[str, Any]:
        auth = {"Authorization": f"Bearer {arg['token']}"}
        body = {"name": arg["name"], "faction": arg["faction"], "character_class": arg["cls"]}
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.post(f"{base}/api/characters", json=body) as resp:
                created = await resp.json()
                if resp.status >= 400:
                    raise RuntimeError(f"create character: {resp.status} {created}")
            char_id = created.get("id") or created.get("character", {}).get("id")
            select = {"character_id": char_id, **arg.get("select", {})}
            async with http.post(f"{base}/api/characters/select", json=select) as resp:
                selected: dict[str, Any] = await resp.json()
                if resp.status >= 400:
                    raise RuntimeError(f"select character: {resp.status} {selected}")
        return selected

    await ctl.serve({"make": make, "character": character})


PASSWORD = "bench-pass-123"


def make_accounts(
    port: int,
    count: int,
    *,
    prefix: str = "bench",
    password: str = PASSWORD,
    sessions_per_account: int = 1,
) -> list[str]:
    """Register ``count`` accounts, log each in ``sessions_per_account`` times; the tokens."""
    with Child(accounts_child, port, kind="asyncio", name="accounts") as child:
        child.recv(30)
        tokens: list[str] = child.call(
            "make",
            {
                "prefix": prefix,
                "count": count,
                "password": password,
                "concurrency": 8,
                "sessions_per_account": sessions_per_account,
            },
            timeout=300,
        )
    return tokens


def make_character(
    port: int,
    token: str,
    name: str,
    *,
    faction: str = "Crimson Covenant",
    cls: str = "Warrior",
    select: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create a character for the session ``token`` and select it; the select answer."""
    with Child(accounts_child, port, kind="asyncio", name="accounts") as child:
        child.recv(30)
        arg: dict[str, Any] = {"token": token, "name": name, "faction": faction, "cls": cls}
        arg["select"] = select or {}
        selected: dict[str, Any] = child.call("character", arg, timeout=60)
    return selected
