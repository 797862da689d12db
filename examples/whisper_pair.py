"""Two players in one program whisper and party-chat peer to peer through a lobby.

Start a lobby first (README.md: ``python -m lobby``), then::

    python examples/whisper_pair.py [--server http://localhost:8888]

Both clients log in (registering on first use), select a character, meet at
the start location (the lobby introduces their peer nodes), form a party and
talk directly over QUIC: each result says whether the message went ``direct``
or through the lobby ``relay``. Their nodes use free UDP ports.
"""

from __future__ import annotations

import argparse
import asyncio

from mesh import NetworkClient
from protocol import MessageType
from protocol.errors import ApiError, ErrorCode

__all__ = ["main", "run"]

PASSWORD = "whisper-pair-password"


async def player(server: str | None, name: str) -> NetworkClient:
    client = NetworkClient(server, p2p_port=0)
    try:
        await client.connect(f"pair_{name.lower()}", PASSWORD, register=True)
    except ApiError as exc:
        if exc.code != ErrorCode.USERNAME_TAKEN:
            raise
        await client.connect(f"pair_{name.lower()}", PASSWORD)
    characters = await client.get_characters()
    if not characters:
        characters = [await client.create_character(name, "Verdant Pact", "Ranger")]
    await client.select_character(characters[0]["id"])
    return client


async def run(server: str | None) -> int:
    alice = await player(server, "Lyra")
    bob = await player(server, "Tamsin")
    try:
        heard = asyncio.Event()

        def on_whisper(message):  # type: ignore[no-untyped-def]
            print(f"[whisper] {message.sender_name}: {message.content}", flush=True)
            heard.set()

        def on_party(message):  # type: ignore[no-untyped-def]
            print(f"[party] {message.sender_name}: {message.content}", flush=True)

        bob.register_handler(MessageType.WHISPER, on_whisper)
        bob.register_handler(MessageType.PARTY_CHAT, on_party)

        result = await alice.send_whisper(bob.character["name"], "Meet me by the shard.")  # type: ignore[index]
        print(f"whisper delivered via {result.path}", flush=True)
        await asyncio.wait_for(heard.wait(), 10)

        for client in (alice, bob):  # start from no party (an earlier run may have left one)
            try:
                await client.leave_party()
            except ApiError as exc:
                if exc.code != ErrorCode.NOT_IN_PARTY:
                    raise
        invited, full = asyncio.Event(), asyncio.Event()
        bob.register_handler(MessageType.PARTY_INVITE, lambda _msg: invited.set())
        alice.register_handler(
            MessageType.PARTY_UPDATE, lambda msg: full.set() if len(msg.members) >= 2 else None
        )
        party_id = (await alice.create_party())["party_id"]
        await alice.invite_to_party(bob.character["name"])  # type: ignore[index]
        await asyncio.wait_for(invited.wait(), 10)
        await bob.accept_party_invite(party_id)
        await asyncio.wait_for(full.wait(), 10)
        sent = await alice.send_party_chat("Party up, the Aetherfall is coming.")
        print(f"party chat delivered: {dict(sent.paths)}", flush=True)
    finally:
        await alice.disconnect()
        await bob.disconnect()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="two peers whisper through the mesh")
    parser.add_argument("--server", default=None, help="lobby URL (default $SHARDS_SERVER_URL)")
    return asyncio.run(run(parser.parse_args().server))


if __name__ == "__main__":
    raise SystemExit(main())
