"""The REST/WS contract where the review found gaps: bounded integers everywhere, 405 Allow,
``/ws`` refusals in the OpenAPI, the character-name schema, and ERROR ``ref_id`` on WS
validation failures."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel, Field

from lobby import MasterServer
from lobby.http.api import Api, ApiRequest, unbounded_integers
from tests.lobby.support import ApiClient, aiohttp_inbox, ws_url

Player = Callable[..., Awaitable[tuple[ApiClient, dict[str, Any]]]]

HOSTILE_INTS = [2**63, 2**63 - 1, -(2**63) - 1, -(2**63), 2**64, 10**30, -(10**30), -1, 0]
"""Integers over and at the signed 64-bit bounds, and small ones an id never is."""


async def test_a_before_past_int64_is_a_422_not_a_500(lobby: MasterServer, player: Player) -> None:
    alice, _ = await player("alice")
    status, body, _ = await alice.call("GET", "/api/world/events?before=9223372036854775808")
    assert status == 422 and body["code"] == "validation_error"
    status, body, _ = await alice.call("GET", "/api/world/events?before=9223372036854775807")
    assert status == 200 and body["events"] == []


async def test_every_integer_parameter_of_the_openapi_survives_hostile_values(
    lobby: MasterServer, player: Player
) -> None:
    """Each integer in a query, a path or a JSON body, at and past the 64-bit bounds: a 4xx or a
    2xx with a JSON body, never a server error."""
    alice, _ = await player("alice")
    doc = (await alice.call("GET", "/api/openapi.json"))[1]
    schemas = doc["components"]["schemas"]
    tried: set[str] = set()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path == "/ws" or method == "delete":  # deleting is swept on a throwaway below
                continue
            for label, variant in _int_variants(path, op, schemas):
                tried.add(f"{method.upper()} {path} {label}")
                for value in HOSTILE_INTS:
                    url, body = variant(value)
                    status, answer, _ = await alice.call(method.upper(), url, body)
                    assert status < 500, (method, url, body, answer)
                    assert isinstance(answer, dict), (method, url, answer)
    for value in HOSTILE_INTS:
        status, answer, _ = await alice.call("DELETE", f"/api/characters/{value}")
        assert status == 404 and answer["code"] == "not_found", (value, answer)
    assert {  # the sweep found the integer parameters
        "GET /api/world/events before",
        "GET /api/world/events limit",
        "GET /api/peers/{character_id} character_id",
        "POST /api/characters/select character_id",
        "POST /api/party/invite target_id",
    } <= tried, tried


def _int_variants(
    path: str, op: dict[str, Any], schemas: dict[str, Any]
) -> list[tuple[str, Callable[[int], tuple[str, Any]]]]:
    """(name, request builder) per integer parameter of ``op`` (value -> url, JSON body)."""
    variants: list[tuple[str, Callable[[int], tuple[str, Any]]]] = []
    params = op.get("parameters", [])
    filled = {p["name"]: "1" for p in params if p["in"] == "path"}
    for param in params:
        if not _is_int(param["schema"]):
            continue
        name, where = param["name"], param["in"]

        def build(value: int, name: str = name, where: str = where) -> tuple[str, Any]:
            url = path.format(**{**filled, name: str(value)} if where == "path" else filled)
            return (f"{url}?{name}={value}" if where == "query" else url), None

        variants.append((name, build))
    body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    ref = body_schema.get("schema", {}).get("$ref", "")
    if ref:
        model = schemas[ref.rsplit("/", 1)[1]]
        base = {
            key: _example(prop)
            for key, prop in model.get("properties", {}).items()
            if key in model.get("required", [])
        }
        for key, prop in model.get("properties", {}).items():
            if _is_int(prop):

                def build_body(value: int, key: str = key) -> tuple[str, Any]:
                    return path.format(**filled), {**base, key: value}

                variants.append((key, build_body))
    return variants


def _is_int(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "integer" or any(
        s.get("type") == "integer" for s in schema.get("anyOf", [])
    )


def _example(prop: dict[str, Any]) -> Any:
    kinds = [prop.get("type")] + [s.get("type") for s in prop.get("anyOf", [])]
    if "integer" in kinds:
        return 1
    if "array" in kinds:
        return []
    return "Abc"


def test_the_api_refuses_an_endpoint_accepting_unbounded_integers() -> None:
    class Loose(BaseModel):
        count: int = Field(ge=0)

    class Huge(BaseModel):
        count: int = Field(ge=0, le=2**64)

    class Bounded(BaseModel):
        count: int = Field(ge=0, le=2**63 - 1)
        maybe: int | None = Field(default=None, ge=-(2**63), le=10)

    async def handler(req: ApiRequest) -> BaseModel:
        raise AssertionError("never called")

    api = Api()
    with pytest.raises(ValueError, match=r"count \(maximum\)"):
        api.route("POST", "/loose", request_model=Loose)(handler)
    with pytest.raises(ValueError, match=r"count \(maximum\)"):
        api.route("GET", "/huge", query_model=Huge)(handler)
    api.route("POST", "/bounded", request_model=Bounded)(handler)
    assert unbounded_integers(Bounded.model_json_schema()) == []


async def test_405_answers_carry_allow(lobby: MasterServer, http: aiohttp.ClientSession) -> None:
    async with http.put(f"{lobby.url}/api/status") as resp:
        assert resp.status == 405
        allowed = {m.strip() for m in resp.headers["Allow"].split(",")}
        assert "GET" in allowed
        body = await resp.json()
        assert body["code"] == "bad_request" and set(body["details"]["allowed"]) == allowed


async def test_ws_without_upgrade_is_a_400_and_ws_refusals_are_documented(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> None:
    alice, _ = await player("alice")
    for headers in ({}, alice.headers()):
        async with http.get(f"{lobby.url}/ws", headers=headers) as resp:
            assert resp.status == 400
            assert (await resp.json())["code"] == "bad_request"
    doc = (await alice.call("GET", "/api/openapi.json"))[1]
    assert {"101", "400", "401", "429"} <= set(doc["paths"]["/ws"]["get"]["responses"])


NAMES = [
    "0",
    "ab",
    "Abc",
    " Abc",
    "Abc ",
    "Abc\n",
    "A" * 20,
    "A" * 21,
    "a_b-c",
    "1abc",
    "Ab c",
    "\u00c1bc",
    "Abc\u0000",
    "_abc",
]


async def test_the_character_name_schema_is_the_servers_rule(
    lobby: MasterServer, make_client: Callable[[], ApiClient]
) -> None:
    client = make_client()
    await client.sign_up("namer")
    doc = (await client.call("GET", "/api/openapi.json"))[1]
    schema = doc["components"]["schemas"]["CharacterCreateRequest"]["properties"]["name"]
    pattern = re.compile(schema["pattern"])
    for i, name in enumerate(NAMES):
        if i and i % 3 == 0:  # stay under the per-account character limit
            for row in (await client.call("GET", "/api/characters"))[1]["characters"]:
                await client.call("DELETE", f"/api/characters/{row['id']}")
        # ECMA-262 (JSON Schema) ``$`` matches only at the very end: fullmatch is the same
        schema_ok = pattern.fullmatch(name) is not None and len(schema) > 0
        status, body, _ = await client.call(
            "POST",
            "/api/characters",
            {"name": name, "faction": "Crimson Covenant", "character_class": "Warrior"},
        )
        assert (status == 201) == schema_ok, (name, status, body)
        if not schema_ok:
            assert (status, body["code"]) == (422, "invalid_name"), (name, body)


async def test_a_ws_validation_error_names_the_request(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> None:
    alice, _ = await player("alice")
    async with http.ws_connect(ws_url(lobby.url), headers=alice.headers()) as ws:
        inbox = aiohttp_inbox(ws)
        bad = [
            {"type": "chat", "message_id": "bad-1", "content": 5},
            {"type": "no_such_type", "message_id": "bad-2"},
            {"type": "chat", "message_id": "bad-3", "content": "x", "version": "99.0.0"},
        ]
        for msg in bad:
            await ws.send_str(json.dumps(msg))
            err = await inbox.next_type("error")
            assert err["ref_id"] == msg["message_id"], err
        # no usable id: still an ERROR, with ref_id null
        for frame in ('{"type": "chat", "message_id": 7}', "[1, 2]", "{not json"):
            await ws.send_str(frame)
            assert (await inbox.next_type("error"))["ref_id"] is None
