"""The OpenAPI 3.1 document, peer tickets at select, and the service extension points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import BaseModel
from sqlalchemy import Column, ForeignKey, Integer, String, Table, insert, select

from lobby import LobbyContext, MasterServer
from lobby.connection import Connection
from lobby.http import ApiRequest
from lobby.storage import VERSION_LOCATIONS, characters, metadata
from protocol.crypto import Identity, b64url_encode, verify_ticket
from protocol.messages import AckMessage, MessageType, MoveMessage
from tests.lobby.support import (
    ApiClient,
    FakeClock,
    aiohttp_inbox,
    branch_revision,
    fast_settings,
    ws_url,
)


async def test_openapi_document_covers_every_endpoint(
    lobby: MasterServer, make_client: object
) -> None:
    client: ApiClient = make_client()  # type: ignore[operator]
    status, doc, _ = await client.call("GET", "/api/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    for ep in lobby.ctx.api.endpoints:
        path = ep.path.replace("{character_id}", "{character_id}")
        assert ep.method.lower() in doc["paths"][path], (ep.method, ep.path)
    login = doc["paths"]["/api/auth/login"]["post"]
    ref = login["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/LoginRequest"
    schemas = doc["components"]["schemas"]
    assert schemas["RegisterRequest"]["properties"]["username"]["pattern"]
    assert "ErrorBody" in schemas and "CharacterOut" in schemas
    # every $ref resolves inside the document
    text = json.dumps(doc)
    for name in {r.split("/")[-1] for r in _refs(doc)}:
        assert name in schemas, name
    assert "$defs" not in text
    delete = doc["paths"]["/api/characters/{character_id}"]["delete"]
    assert delete["security"] == [{"bearerAuth": []}]
    assert {"401", "404", "429"} <= set(delete["responses"])
    assert "/ws" in doc["paths"]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_select_returns_a_ticket_that_verifies_with_the_status_key(
    lobby: MasterServer, player: Any, clock: FakeClock
) -> None:
    client, hero = await player("alice", "Azure Syndicate", "Rogue")
    identity = Identity.generate()
    selected = await client.select(
        hero["id"],
        peer_public_key=b64url_encode(identity.public_key),
        box_key=b64url_encode(identity.box_public_key),
        endpoints=["127.0.0.1:9000"],
    )
    _, status, _ = await client.call("GET", "/api/status")
    lobby_key = status["lobby_public_key"]
    assert selected["lobby_public_key"] == lobby_key
    from protocol.crypto import b64url_decode

    ticket = verify_ticket(selected["ticket"], b64url_decode(lobby_key), now=clock())
    assert ticket.character_id == hero["id"] and ticket.faction == "Azure Syndicate"
    assert ticket.public_key_bytes == identity.public_key
    assert ticket.endpoints == []  # addresses go only to paired peers, never in the ticket
    assert selected["peer_id"] == identity.peer_id == ticket.peer_id
    # half a key pair, or not a key, is refused
    for extra in (
        {"peer_public_key": b64url_encode(identity.public_key)},
        {"peer_public_key": "A" * 43, "box_key": "%" * 43},
    ):
        code, err, _ = await client.call(
            "POST", "/api/characters/select", {"character_id": hero["id"], **extra}
        )
        assert (code, err["code"]) == (422, "validation_error")


class EchoOut(BaseModel):
    character_id: int | None
    notes: int


class NotesService:
    """A toy service: its own table (an Alembic revision), a REST endpoint, a WS handler, a hook."""

    name = "notes"

    def __init__(self, table: Table) -> None:
        self.table = table
        self.joined: list[int] = []

    async def setup(self, ctx: LobbyContext) -> None:
        ctx.api.route("GET", "/api/notes", response_model=EchoOut, summary="Notes")(self.get)
        ctx.hub.register(MessageType.MOVE, self.on_move)
        ctx.hub.on_join(self.on_join)

    async def close(self) -> None:
        pass

    async def on_join(self, presence: Any) -> None:
        self.joined.append(presence.character.id)

    async def get(self, req: ApiRequest) -> EchoOut:
        session = req.require_session()
        async with req.ctx.db.read() as conn:
            count = len((await conn.execute(select(self.table))).all())
        return EchoOut(character_id=session.character_id, notes=count)

    async def on_move(self, conn: Connection, msg: MoveMessage) -> None:
        character = conn.character
        assert character is not None
        async with conn.ctx.db.write() as db:
            await db.execute(
                insert(self.table).values(character_id=character.id, text=str(msg.to_location_id))
            )
        conn.send(AckMessage(ref_id=msg.message_id))


NOTES_REVISION = branch_revision(
    "notes1",
    "notes",
    """
    op.create_table(
        "test_notes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("character_id", sa.Integer, sa.ForeignKey("characters.id", ondelete="CASCADE")),
        sa.Column("text", sa.String(50)),
    )
    """,
    downgrade='op.drop_table("test_notes")',
)


async def test_a_service_plugs_in_tables_routes_and_ws_handlers(
    tmp_path: Path, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    table = Table(
        "test_notes",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("character_id", Integer, ForeignKey(characters.c.id, ondelete="CASCADE")),
        Column("text", String(50)),
    )
    versions = tmp_path / "notes_versions"  # the service's own revisions, on their own branch
    versions.mkdir()
    (versions / "notes1_create.py").write_text(NOTES_REVISION)
    VERSION_LOCATIONS.append(versions)
    try:
        service = NotesService(table)
        settings = fast_settings(tmp_path / "d")
        async with MasterServer(settings=settings, clock=clock, services=[service]) as server:
            client = ApiClient(server.url, http)
            hero = await client.play("noter", "Verdant Pact", "Ranger", "Noter")
            assert service.joined == []  # not connected yet
            async with http.ws_connect(ws_url(server.url), headers=client.headers()) as ws:
                inbox = aiohttp_inbox(ws)
                await ws.send_str(
                    json.dumps({"type": "move", "message_id": "mv1", "to_location_id": 2})
                )
                assert (await inbox.next_type("ack"))["ref_id"] == "mv1"
            assert service.joined == [hero["id"]]
            status, body, _ = await client.call("GET", "/api/notes")
            assert (status, body) == (200, {"character_id": hero["id"], "notes": 1})
            _, doc, _ = await client.call("GET", "/api/openapi.json")
            assert "/api/notes" in doc["paths"]
            async with server.ctx.db.read() as conn:
                found = await conn.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert "notes1" in set(found.scalars())
    finally:
        VERSION_LOCATIONS.remove(versions)
        metadata.remove(table)
