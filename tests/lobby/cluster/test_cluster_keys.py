"""One ticket key for every lobby process, and rotating it without dropping peers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lobby import MasterServer
from lobby.keys import load_or_create_key
from mesh.auth import LobbyTicketAuth
from mesh.discovery.lobby import LobbyDirectory
from protocol.crypto import Identity, b64url_decode, b64url_encode
from protocol.errors import ConfigError, TicketIssuerError
from protocol.messages import PeerInfoMessage
from tests.lobby.support import ApiClient, FakeClock, fast_settings


def test_processes_creating_the_shared_key_at_once_end_with_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "cluster" / "ticket.pem"
    start = threading.Barrier(8)
    keys: list[bytes] = []

    def create() -> None:
        start.wait()
        keys.append(load_or_create_key(tmp_path, path=path).public_key)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert load_or_create_key(tmp_path, path=path).public_key == keys[0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["ticket.pem"]  # no temp files left


def test_an_accepted_key_must_be_a_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an Ed25519 public key"):
        load_or_create_key(tmp_path, accepted=["not-a-key"])


async def _ticket(client: ApiClient, character_id: int) -> tuple[dict[str, Any], Identity]:
    identity = Identity.generate()
    answer = await client.select(
        character_id,
        peer_public_key=b64url_encode(identity.public_key),
        box_key=b64url_encode(identity.box_public_key),
        endpoints=["127.0.0.1:9000"],
    )
    return answer, identity


async def test_rotation_keeps_tickets_of_the_old_key_accepted(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    data = tmp_path / "data"
    old_file, new_file = tmp_path / "old.pem", tmp_path / "new.pem"
    async with MasterServer(
        settings=fast_settings(data, ticket_key_file=old_file), clock=clock
    ) as server:
        client = ApiClient(server.url, http)
        await client.register("alice")
        await client.login("alice")
        hero = await client.create_character("Alicia", "Verdant Pact", "Mage")
        old_answer, _ = await _ticket(client, int(hero["id"]))
        old_key = old_answer["lobby_public_key"]
    # step 2 of a rotation: sign with the new key, keep accepting the old one
    settings = fast_settings(data, ticket_key_file=new_file, ticket_accepted_keys=[old_key])
    async with MasterServer(settings=settings, clock=clock) as server:
        client = ApiClient(server.url, http)
        await client.login("alice")
        _, status, _ = await client.call("GET", "/api/status")
        new_key = status["lobby_public_key"]
        assert new_key != old_key and status["lobby_accepted_keys"] == [old_key]
        new_answer, _ = await _ticket(client, int(hero["id"]))
        assert new_answer["lobby_accepted_keys"] == [old_key]

    # a peer that trusts what the lobby publishes admits both tickets ...
    auth = LobbyTicketAuth(
        b64url_decode(new_key), new_answer["ticket"], accepted_keys=[b64url_decode(old_key)]
    )
    for answer in (old_answer, new_answer):
        assert auth.verify_credential(answer["ticket"], now=clock()).peer_id == answer["peer_id"]
    directory = LobbyDirectory(b64url_decode(new_key), [b64url_decode(old_key)])
    info = PeerInfoMessage(
        character_id=int(hero["id"]),
        character_name="Alicia",
        online=True,
        ticket=old_answer["ticket"],
        node_id=old_answer["peer_id"],
        endpoints=["127.0.0.1:9000"],
    )
    found = directory.peer_info(info, now=clock())
    assert found is not None and found.peer_id == old_answer["peer_id"]
    # ... and one that trusts only the new key would have dropped the old peers
    with pytest.raises(TicketIssuerError):
        LobbyTicketAuth(b64url_decode(new_key), "-").verify_credential(
            old_answer["ticket"], now=clock()
        )
