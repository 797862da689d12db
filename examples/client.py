"""The original specification's "Connecting as a Client" (docs/specification.md): log in,
pick a character, chat, read the world.

Start a lobby first (README.md: ``python -m lobby``), then::

    python examples/client.py [--username aria --password "correct horse"]

``--server`` (default ``$SHARDS_SERVER_URL`` or http://localhost:8888) names the
lobby. The account is logged in to, or created when it does not exist yet; a
character is created when the account has none (``--character``, default: the
username, capitalized; ``--faction``, ``--class``). The node's UDP port is
``--p2p-port`` (default ``$SHARDS_P2P_PORT``, else 9000, or a free port when
another peer on this machine holds 9000; 0 = any).
It prints chat, whispers and who is near until Ctrl-C, or for ``--seconds N``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from mesh import NetworkClient
from protocol import MessageType
from protocol.errors import ApiError, ErrorCode, ShardsError

__all__ = ["main", "run"]


async def run(args: argparse.Namespace) -> int:
    # Create and connect client
    client = NetworkClient(args.server, p2p_port=args.p2p_port)
    try:
        # Log in; on a fresh lobby, create the account first
        try:
            await client.connect(args.username, args.password)
        except ApiError as exc:
            if exc.code != ErrorCode.INVALID_CREDENTIALS:
                raise
            try:
                await client.connect(args.username, args.password, register=True)
            except ApiError as taken:
                if taken.code != ErrorCode.USERNAME_TAKEN:
                    raise
                raise exc from None  # the account exists: the password is wrong
            print(f"Created account {args.username}", flush=True)

        # Register message handlers (sync and async both work)
        async def on_chat(message):  # type: ignore[no-untyped-def]
            print(f"[{message.channel}] {message.sender_name}: {message.content}", flush=True)

        def on_whisper(message):  # type: ignore[no-untyped-def]
            print(f"[whisper] {message.sender_name}: {message.content}", flush=True)

        def on_joined(message):  # type: ignore[no-untyped-def]
            print(f"* {message.character_name} arrived", flush=True)

        def on_error(message):  # type: ignore[no-untyped-def]
            print(f"Error {message.error_code}: {message.error_message}", flush=True)

        client.register_handler(MessageType.CHAT, on_chat)
        client.register_handler(MessageType.WHISPER, on_whisper)
        client.register_handler(MessageType.PLAYER_JOINED_AREA, on_joined)
        client.register_handler(MessageType.ERROR, on_error)

        # Select character (create one on a fresh account)
        characters = await client.get_characters()
        if not characters:
            name = args.character or args.username.capitalize()
            created = await client.create_character(name, args.faction, args.cls)
            characters = [created]
        character = await client.select_character(characters[0]["id"])
        print(f"Playing {character['name']} at location {character['location_id']}", flush=True)

        # Send chat message
        await client.send_chat("Hello, world!")

        # Get world state
        world_state = await client.get_world_state()
        print(f"Current reality: {world_state['current_reality']}", flush=True)

        # Who is near
        for player in client.get_nearby_players():
            print(f"{player.character_name} (Level {player.level}, {player.faction})", flush=True)

        # Keep running
        await _wait(args.seconds)
    except ShardsError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    finally:
        await client.disconnect()
    return 0


async def _wait(seconds: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description="Shards of Eternity example client")
    parser.add_argument("--server", default=None, help="lobby URL")
    parser.add_argument("--username", default="username")
    parser.add_argument("--password", default="password", help="created with the account")
    parser.add_argument("--character", help="name of a new character (default: the username)")
    parser.add_argument("--faction", default="Crimson Covenant")
    parser.add_argument("--class", dest="cls", default="Mage")
    parser.add_argument(
        "--p2p-port", type=int, default=None, help="UDP port (default 9000, or a free one)"
    )
    parser.add_argument("--seconds", type=float, default=None, help="leave after N seconds")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
