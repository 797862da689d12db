"""A bare mDNS peer for tests: advertise, print READY, run until killed.

``python -m tests.mesh.discovery.mdns_peer --interface 127.0.0.1 --peer-id ID --tag TAG``
"""

from __future__ import annotations

import argparse
import asyncio

from mesh.discovery import MdnsDiscovery

__all__ = ["main"]


async def _run(args: argparse.Namespace) -> None:
    node = MdnsDiscovery(
        peer_id=args.peer_id,
        name="victim",
        port=args.port,
        group_tag=args.tag,
        interfaces=[args.interface],
        heartbeat=0.5,
        peer_timeout=2.0,
    )
    async with node:
        print("READY", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interface", required=True)
    parser.add_argument("--peer-id", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--port", type=int, default=4242)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
