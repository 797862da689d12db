"""mDNS across three network namespaces on a bridge: discovery and a killed node."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.mesh.discovery.helpers import new_peer_id, new_tag
from tests.mesh.netns import NetnsLan, netns_unavailable_reason

_REASON = netns_unavailable_reason()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


async def _read_json(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    while True:
        line = await process.stdout.readline()
        if not line:
            raise AssertionError("peer process ended")
        if line.startswith(b"{"):
            return dict(json.loads(line))


async def _until(process: asyncio.subprocess.Process, predicate: Any) -> dict[str, Any]:
    while True:
        event = await _read_json(process)
        if predicate(event):
            return event


async def test_three_namespaces_discover_and_notice_a_killed_node() -> None:
    tag = new_tag()
    async with NetnsLan(3) as lan:
        ids = [new_peer_id() for _ in lan.nodes]
        procs = []
        for index, node in enumerate(lan.nodes):
            procs.append(
                await lan.spawn(
                    node,
                    ["-m", "tests.mesh.discovery.mdns_peer", "--interface", node.address,
                     "--peer-id", ids[index], "--tag", tag, "--name", f"n{index}"],
                    stdin=False,
                )
            )  # fmt: skip
        for index, proc in enumerate(procs):
            seen: dict[str, list[list[Any]]] = {}
            others = {ids[j]: lan.nodes[j].address for j in range(3) if j != index}

            def found_all(
                event: dict[str, Any], seen: dict[str, Any] = seen, others: Any = others
            ) -> bool:
                if event["event"] == "found":
                    seen[event["peer_id"]] = event["endpoints"]
                return set(others) <= set(seen)

            await asyncio.wait_for(_until(proc, found_all), 30)
            for peer, address in others.items():
                assert seen[peer] == [[address, 4242]]
        procs[2].kill()
        await procs[2].wait()
        for proc in procs[:2]:
            await asyncio.wait_for(
                _until(proc, lambda e: e["event"] == "lost" and e["peer_id"] == ids[2]), 20
            )
