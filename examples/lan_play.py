"""The smallest program that joins a LAN game (no lobby, no server).

Everyone on the network who starts it with the same passphrase finds the
others over mDNS and talks to them directly over encrypted QUIC::

    python examples/lan_play.py --name Aria --passphrase "our secret"
    python examples/lan_play.py --name Borin --passphrase "our secret" --interface 192.168.1.21

``--interface`` picks the LAN address to play on (default: every LAN address).
``--seconds N`` leaves after N seconds (default: stay until Ctrl-C); when
nobody has joined by then, it says so and leaves. The node takes UDP port
9000 (``--port``), or a free port when another peer on this machine holds 9000.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from mesh.discovery import LanNode, MemberJoined
from protocol import MessageType

__all__ = ["play"]


async def play(
    name: str, passphrase: str, interface: str | None, port: int | None, seconds: float | None
) -> None:
    async with LanNode(
        name=name,
        passphrase=passphrase,
        interfaces=[interface] if interface else None,
        port=port,  # None: 9000, or a free port when 9000 is taken
    ) as lan:
        print(f"{name} is looking for players on {', '.join(lan.interfaces)}", flush=True)

        def on_event(event: object) -> None:
            if isinstance(event, MemberJoined):
                print(f"{event.identity.character_name} joined", flush=True)

        lan.add_listener(on_event)
        lan.register_handler(
            MessageType.WHISPER,
            lambda m: print(f"[whisper] {m.sender_name}: {m.content}", flush=True),
        )
        lan.register_handler(
            MessageType.PARTY_CHAT,
            lambda m: print(f"[party] {m.sender_name}: {m.content}", flush=True),
        )
        lan.register_handler(
            MessageType.POSITION_UPDATE,
            lambda u: print(
                f"#{u.character_id} is at {u.position.x, u.position.y, u.position.z}", flush=True
            ),
        )

        try:
            members = await lan.wait_for_members(1, timeout=seconds or 3600)
        except TimeoutError:
            print("nobody joined; leaving", flush=True)
            return
        first = next(iter(members.values()))
        await lan.send_whisper(first.peer_id, f"hi {first.character_name}, {name} here")
        await lan.send_party_chat(f"hello from {name}")
        lan.send_position_update((1.0, 2.0, 3.0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), seconds)  # play until time is up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--passphrase", required=True)
    parser.add_argument("--interface", help="the LAN IPv4 address to play on")
    parser.add_argument("--port", type=int, default=None, help="UDP port (0: any free one)")
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(play(args.name, args.passphrase, args.interface, args.port, args.seconds))


if __name__ == "__main__":
    main()
