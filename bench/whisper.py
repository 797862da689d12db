"""Whisper path: round trip of a whisper over the direct mesh vs through the lobby relay.

Every network link gets 20 ms each way from a user-space proxy (``bench._delay``): the direct
path is one link (node A -> UDP proxy -> node B); the relay path is two (node A -> TCP proxy ->
lobby WebSocket -> TCP proxy -> node B). A round trip is ``await PeerNode.send_whisper``: it
resolves when B's acknowledgement is back, so it spans the message and the ack. The relay pair
knows each other only by lobby-issued tickets without endpoints (``add_peer(ticket, None)``),
so the node has no direct path and hands sealed envelopes to the relay: a ``RELAY`` message on
its lobby WebSocket; each node feeds the ``RELAY`` messages it receives to ``receive_relayed``.
Target: direct <= 0.55x relay.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from bench._common import LOOPS, latency_rows, make_result, percentiles_ms, row, skip_result
from bench._delay import tcp_delay_child, udp_delay_child
from bench._proc import Child

__all__ = ["run"]

TITLE = "whisper: direct mesh vs lobby relay, 20 ms per link"
DELAY = 0.020
INTERVAL = 0.02


def _b64decode(text: str) -> bytes:
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return base64.b64decode(text + "=" * (-len(text) % 4))


async def node_child(ctl: Any, opts: dict[str, Any]) -> None:
    """Child body: one PeerNode, optionally with a relay over a lobby WebSocket.

    ``opts``: ``seed`` (identity key bytes), ``ticket``, ``lobby_public_key`` and, for the
    relay, ``ws_url``. Commands: "whispers" {ticket, endpoint | None, target, count}.
    """
    import aiohttp
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from bench._mesh import start_node
    from protocol.crypto import Identity

    identity = Identity(Ed25519PrivateKey.from_private_bytes(opts["seed"]))
    session: aiohttp.ClientSession | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    reader: asyncio.Task[None] | None = None
    errors: list[str] = []
    lobby_error = asyncio.Event()

    async def relay(target_character_id: int, data: bytes) -> None:
        assert ws is not None
        payload = base64.b64encode(data).decode()
        await ws.send_json({"type": "relay", "target_id": target_character_id, "payload": payload})

    node = await start_node(
        identity,
        opts["ticket"],
        opts["lobby_public_key"],
        relay=relay if opts.get("ws_url") else None,
    )
    if opts.get("ws_url"):
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(opts["ws_url"], heartbeat=None)

        async def read() -> None:
            assert ws is not None
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = msg.json()
                # The hub may batch queued messages into one frame holding a JSON array.
                for item in data if isinstance(data, list) else [data]:
                    if item.get("type") == "relay":
                        node.receive_relayed(_b64decode(item["payload"]))
                    elif item.get("type") == "error":
                        if len(errors) < 5:
                            errors.append(f"{item.get('error_code')}: {item.get('error_message')}")
                        lobby_error.set()

        reader = asyncio.ensure_future(read())
    ctl.send(("ready", node.address))

    async def whispers(arg: dict[str, Any]) -> dict[str, Any]:
        if arg["endpoint"] is not None:
            await asyncio.wait_for(node.connect(arg["ticket"], tuple(arg["endpoint"])), 15.0)
        else:
            node.add_peer(arg["ticket"], None)
        rtts: list[int] = []
        paths: dict[str, int] = {}
        for i in range(arg["count"]):
            t0 = time.perf_counter_ns()
            send = asyncio.ensure_future(node.send_whisper(arg["target"], f"hi {i}"))
            failed = asyncio.ensure_future(lobby_error.wait())
            await asyncio.wait({send, failed}, timeout=10.0, return_when=asyncio.FIRST_COMPLETED)
            failed.cancel()
            if not send.done():
                send.cancel()
                errors.append("stopped: a lobby ERROR, or no acknowledgement within 10 s")
                break  # the lobby refused to relay, or the path is dead: stop here
            if send.exception() is not None:
                errors.append(f"{type(send.exception()).__name__}: {send.exception()}"[:200])
                break
            if i > 0:  # the first one pays for the path set-up
                rtts.append(time.perf_counter_ns() - t0)
            path = send.result().path
            paths[path] = paths.get(path, 0) + 1
            await asyncio.sleep(INTERVAL)
        return {"rtt_ns": rtts, "paths": paths, "errors": errors[:5]}

    try:
        await ctl.serve({"whispers": whispers})
    finally:
        if reader is not None:
            reader.cancel()
        if ws is not None:
            await ws.close()
        if session is not None:
            await session.close()
        await node.close()


def _direct(kind: str, count: int) -> dict[str, Any]:
    import os

    from bench._mesh import lobby_key_bytes
    from protocol.crypto import Identity, issue_ticket, public_key_raw

    key_bytes = lobby_key_bytes()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(key_bytes)
    opts: list[dict[str, Any]] = []
    for cid in (1, 2):
        seed = os.urandom(32)
        identity = Identity(Ed25519PrivateKey.from_private_bytes(seed))
        ticket = issue_ticket(
            key,
            character_id=cid,
            character_name=f"Whisperer{cid}",
            faction="Crimson Covenant",
            public_key=identity.public_key,
            box_key=identity.box_public_key,
            now=time.time(),
            ttl=3600.0,
        )
        opts.append({"seed": seed, "ticket": ticket, "lobby_public_key": public_key_raw(key)})
    with (
        Child(node_child, opts[0], kind=kind, name="whisper-a") as a,
        Child(node_child, opts[1], kind=kind, name="whisper-b") as b,
    ):
        a.recv(30)
        _, addr_b = b.recv(30)
        with Child(udp_delay_child, tuple(addr_b), DELAY, kind=kind, name="udp-delay") as proxy:
            _, proxy_port = proxy.recv(30)
            arg = {
                "ticket": opts[1]["ticket"],
                "endpoint": ("127.0.0.1", proxy_port),
                "target": 2,
                "count": count + 1,
            }
            result: dict[str, Any] = a.call("whispers", arg, timeout=count * 2 + 60)
    return result


def _relay(kind: str, count: int) -> dict[str, Any]:
    import os

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from bench._lobby import BENCH_LIMITS, FAST_HASH, make_accounts, make_character, start_lobby
    from protocol.crypto import Identity, b64url_decode, b64url_encode

    settings = {**BENCH_LIMITS, **FAST_HASH, "ws_message_rate": 1e6, "ws_message_burst": 1e6}
    lobby, port = start_lobby(settings, kind)
    children: list[Child] = []
    try:
        tokens = make_accounts(port, 2, prefix="whisper")
        opts: list[dict[str, Any]] = []
        characters: list[int] = []
        for i, token in enumerate(tokens):
            seed = os.urandom(32)
            identity = Identity(Ed25519PrivateKey.from_private_bytes(seed))
            selected = make_character(
                port,
                token,
                f"Whisperer{i}",
                select={
                    "peer_public_key": b64url_encode(identity.public_key),
                    "box_key": b64url_encode(identity.box_public_key),
                },
            )
            if not selected.get("ticket"):
                raise RuntimeError(f"the lobby issued no peer ticket: {selected}")
            proxy = Child(tcp_delay_child, ("127.0.0.1", port), DELAY, kind=kind, name="tcp-delay")
            children.append(proxy)
            _, proxy_port = proxy.recv(30)
            characters.append(int(selected["character"]["id"]))
            opts.append(
                {
                    "seed": seed,
                    "ticket": selected["ticket"],
                    "lobby_public_key": b64url_decode(selected["lobby_public_key"]),
                    "ws_url": f"http://127.0.0.1:{proxy_port}/ws?token={token}",
                }
            )
        a = Child(node_child, opts[0], kind=kind, name="whisper-a")
        children.append(a)
        b = Child(node_child, opts[1], kind=kind, name="whisper-b")
        children.append(b)
        a.recv(30)
        b.recv(30)
        arg = {"ticket": opts[1]["ticket"], "endpoint": None, "target": characters[1]}
        arg["count"] = count + 1
        result: dict[str, Any] = a.call("whispers", arg, timeout=count * 3 + 60)
    finally:
        for child in reversed(children):
            child.close()
        lobby.close()
    return result


def run(quick: bool) -> dict[str, Any]:
    from bench._lobby import lobby_skip_reason
    from bench._mesh import product_skip_reason

    skip = product_skip_reason()
    if skip is not None:
        return skip_result("whisper", TITLE, skip)
    lobby_skip = lobby_skip_reason()
    count = 10 if quick else 100
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    notes = [
        f"{count} whispers per path, one at a time {INTERVAL * 1000:g} ms apart, each timed "
        f"until its ack is back; {DELAY * 1000:g} ms added each way on every link (floor: "
        f"{2 * DELAY * 1000:g} ms direct, {4 * DELAY * 1000:g} ms relayed)."
    ]
    for kind in LOOPS:
        direct = _direct(kind, count)
        d = percentiles_ms(direct["rtt_ns"])
        figures[kind] = {"direct": {**d, "paths": direct["paths"], "errors": direct["errors"]}}
        if direct["errors"]:
            notes.append(f"{kind}: direct errors {direct['errors'][:2]}")
        if lobby_skip is not None:
            rows.append(
                row(loop=kind, metric="direct whisper RTT p50", value=d["p50_ms"], unit="ms")
            )
            continue
        try:
            relayed = _relay(kind, count)
        except RuntimeError as exc:
            lobby_skip = f"relay not measurable: {exc}"[:300]
            rows.append(
                row(loop=kind, metric="direct whisper RTT p50", value=d["p50_ms"], unit="ms")
            )
            continue
        if not relayed["rtt_ns"]:
            lobby_skip = f"the lobby relay delivered nothing: {relayed['errors'][:2]}"
            rows.append(
                row(loop=kind, metric="direct whisper RTT p50", value=d["p50_ms"], unit="ms")
            )
            continue
        r = percentiles_ms(relayed["rtt_ns"])
        figures[kind]["relay"] = {**r, "paths": relayed["paths"], "errors": relayed["errors"]}
        if relayed["errors"]:
            notes.append(f"{kind}: relay errors {relayed['errors'][:2]}")
        rows += latency_rows(
            kind,
            "whisper RTT {q}, direct",
            d,
            r,
            "via lobby relay",
            targets={"p50": ("ratio", "<=", 0.55)},
        )
    return make_result("whisper", TITLE, rows, figures=figures, notes=notes, skipped=lobby_skip)
