"""The seed's "Connecting as a Client" snippet, run against a real lobby.

The snippet below is the seed's, but for its import lines (``from mesh import
NetworkClient`` and ``from protocol import MessageType``). ``NetworkClient()``
takes its server URL from ``SHARDS_SERVER_URL`` and its UDP port from
``SHARDS_P2P_PORT`` (the seed's defaults otherwise): the test points them at a
lobby on a free port and lets the node pick a free port. The account exists
beforehand (the snippet only logs in).
"""

from __future__ import annotations

import asyncio
import contextlib
import io

import pytest

from mesh import NetworkClient
from protocol import MessageType
from tests.e2e.deployments import Deployment

__all__: list[str] = []


# --- the seed's snippet (imports adapted) -------------------------------------------


async def main():  # type: ignore[no-untyped-def]
    # Create and connect client
    client = NetworkClient()
    await client.connect("username", "password")

    # Register message handlers
    async def on_chat(message):  # type: ignore[no-untyped-def]
        print(f"[{message.channel}] {message.sender_name}: {message.content}")

    client.register_handler(MessageType.CHAT, on_chat)

    # Select character
    characters = await client.get_characters()
    if characters:
        await client.select_character(characters[0]["id"])

    # Send chat message
    await client.send_chat("Hello, world!")

    # Get world state
    world_state = await client.get_world_state()
    print(f"Current reality: {world_state['current_reality']}")

    # Keep running
    try:
        await asyncio.Event().wait()
    finally:
        await client.disconnect()


# --- the test ----------------------------------------------------------------------------


class Screen(io.StringIO):
    """stdout for the snippet: remembers lines and wakes whoever waits for one."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def write(self, text: str) -> int:
        self.changed.set()
        return super().write(text)

    async def shows(self, *needles: str) -> list[str]:
        while True:
            lines = self.getvalue().splitlines()
            if all(any(n in line for line in lines) for n in needles):
                return lines
            self.changed.clear()
            await self.changed.wait()


async def test_seed_client_snippet_runs(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = NetworkClient(deployment.url_for(0), p2p_port=0)
    await setup.connect("username", "password", register=True)
    await setup.create_character("Aria", "Crimson Covenant", "Mage")
    await setup.disconnect()
    monkeypatch.setenv("SHARDS_SERVER_URL", deployment.url_for(1))
    monkeypatch.setenv("SHARDS_P2P_PORT", "0")

    screen = Screen()
    with contextlib.redirect_stdout(screen):
        task = asyncio.create_task(main())  # type: ignore[no-untyped-call]
        try:
            lines = await asyncio.wait_for(
                screen.shows("[global] Aria: Hello, world!", "Current reality: "), 20
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    reality = next(line for line in lines if line.startswith("Current reality: "))
    assert reality.removeprefix("Current reality: ").strip()
