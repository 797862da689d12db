"""A bare mDNS peer for tests: advertise, print events as JSON lines, run until killed.

``python -m tests.mesh.discovery.mdns_peer --interface 127.0.0.1 --peer-id ID --tag TAG``
prints ``READY`` once advertised, then one JSON object per discovery event.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from mesh.discovery import MdnsDiscovery, PeerFound

__all__ = ["main"]


async def _run(args: argparse.Namespace) -> None:
    node = MdnsDiscovery(
        peer_id=args.peer_id,
        name=args.name,
        port=args.port,
        group_tag=args.tag,
        interfaces=[args.interface],
        heartbeat=0.5,
        peer_timeout=3.0,
    )
    async with node:
        print("READY", flush=True)
        async for event in node.events():
            if isinstance(event, PeerFound):
                line = {"event": "found", "peer_id": event.peer_id, "name": event.name,
                        "endpoints": [list(e) for e in event.endpoints]}  # fmt: skip
            else:
                line = {"event": "lost", "peer_id": event.peer_id}
            print(json.dumps(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interface", required=True)
    parser.add_argument("--peer-id", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--name", default="victim")
    parser.add_argument("--port", type=int, default=4242)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
