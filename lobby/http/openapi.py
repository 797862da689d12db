"""OpenAPI 3.1 document of the lobby, generated from the registered endpoints' models.

Schemas come from ``model_json_schema(ref_template="#/components/schemas/{model}")``
of the same pydantic models that validate requests and serialize responses;
nested definitions (``$defs``) are hoisted into ``components.schemas``.
Endpoints with ``auth`` declare the ``bearerAuth`` scheme and a 401 answer;
every error answer references ``ErrorBody``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel

from lobby.http.api import Endpoint
from protocol.messages.base import MAX_ID
from protocol.rest import ErrorBody

__all__ = ["WS_DESCRIPTION", "build_openapi"]

_REF = "#/components/schemas/{model}"
_REASONS = {
    400: "Bad request (invalid_json, bad_request)",
    401: "Missing, invalid, revoked or expired token",
    403: "Forbidden",
    404: "Not found (also: another account's resource)",
    409: "Conflict (taken name, limit reached, refused rule)",
    413: "Body too large",
    422: "Validation error",
    429: "Rate limited or locked out; see Retry-After",
}
_WS_REFUSALS = {
    400: "Not a WebSocket upgrade, or an encoding this lobby does not offer",
    401: _REASONS[401],
    429: "Too many requests or connections (address, account); see Retry-After",
}
"""Answers of ``GET /ws`` instead of the upgrade (the connection is closed after each)."""

_WS_HANDSHAKE = [
    {"name": name, "in": "header", "required": True, "schema": schema}
    for name, schema in (
        ("Upgrade", {"type": "string", "enum": ["websocket"]}),
        ("Connection", {"type": "string", "enum": ["Upgrade"]}),
        ("Sec-WebSocket-Key", {"type": "string", "pattern": "^[A-Za-z0-9+/]{22}==$"}),
        ("Sec-WebSocket-Version", {"type": "string", "enum": ["13"]}),
    )
]
"""The RFC 6455 handshake headers: without them ``GET /ws`` is a 400."""

WS_DESCRIPTION = """\
WebSocket upgrade. Authenticate with `Authorization: Bearer <token>` or `?token=<token>`
(the header is preferred: query strings end up in logs). Without a valid session the
upgrade is refused with a JSON 401.

Client to server: one protocol message (JSON object) per text frame.
Server to client: a text frame holds either ONE message (a JSON object) or a BATCH
(a JSON array of message objects, in order) when several were queued; clients must
accept both. Binary frames are refused with ERROR invalid_message.

Errors keep the connection open: invalid JSON -> ERROR invalid_json, an unknown type
-> ERROR unknown_type, a frame over ws_max_message_size -> ERROR message_too_large,
too many messages -> ERROR rate_limited (details.retry_after). Close codes: 1000 logout /
idle timeout, 1001 lobby shutting down, 1002 WebSocket protocol error (a malformed frame),
1007 a text frame that is not UTF-8, 1008 flood continued after ERRORs or session
expired/revoked, 1009 frame over the hard size limit, 1011 internal error, 1013 slow
consumer (send queue full), 4000 replaced by a newer connection of the same session.
An answer other than 101 (400, 401, 429) closes the connection.
"""


def build_openapi(
    endpoints: Iterable[Endpoint],
    *,
    title: str,
    version: str,
    description: str = "",
    choices: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``endpoints``.

    ``choices`` narrows string fields the lobby checks against its data (the world's
    factions and classes) to an ``enum``: ``{"SchemaName": {"field": values}}``.
    """
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    _add_schema(ErrorBody, schemas, "serialization")
    error_ref = {"$ref": _REF.format(model="ErrorBody")}
    for ep in endpoints:
        op: dict[str, Any] = {
            "operationId": _operation_id(ep),
            "summary": ep.summary or ep.path,
            "responses": {},
        }
        if ep.description:
            op["description"] = ep.description
        if ep.tags:
            op["tags"] = list(ep.tags)
        params = [
            {"name": name, "in": "path", "required": True, "schema": _path_schema(kind)}
            for name, kind in ep.path_params.items()
        ]
        if ep.query_model is not None:
            qschema = ep.query_model.model_json_schema(ref_template=_REF)
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                params.append(
                    {"name": name, "in": "query", "required": name in required, "schema": prop}
                )
        if params:
            op["parameters"] = params
        if ep.request_model is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _add_schema(ep.request_model, schemas, "validation")
                    }
                },
            }
        ok: dict[str, Any] = {"description": "Success"}
        if ep.response_model is not None:
            ok["content"] = {
                "application/json": {
                    "schema": _add_schema(ep.response_model, schemas, "serialization")
                }
            }
        op["responses"][str(ep.status)] = ok
        statuses = set(ep.errors) | {429}
        if ep.request_model is not None or ep.query_model is not None:
            statuses |= {400, 413, 422}
        if ep.auth:
            statuses.add(401)
            op["security"] = [{"bearerAuth": []}]
        for status in sorted(statuses):
            op["responses"][str(status)] = {
                "description": _REASONS.get(status, "Error"),
                "content": {"application/json": {"schema": error_ref}},
            }
        paths.setdefault(_openapi_path(ep.path), {})[ep.method.lower()] = op
    paths["/ws"] = {
        "get": {
            "operationId": "websocket",
            "summary": "WebSocket: protocol messages both ways",
            "description": WS_DESCRIPTION,
            "tags": ["realtime"],
            "parameters": [
                {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}},
                *_WS_HANDSHAKE,
            ],
            "security": [{"bearerAuth": []}, {}],
            "responses": {
                "101": {"description": "Switching protocols"},
                **{
                    str(status): {
                        "description": reason,
                        "content": {"application/json": {"schema": error_ref}},
                    }
                    for status, reason in _WS_REFUSALS.items()
                },
            },
        }
    }
    for schema_name, fields in (choices or {}).items():
        properties = schemas.get(schema_name, {}).get("properties", {})
        for field_name, values in fields.items():
            if field_name in properties:
                properties[field_name]["enum"] = sorted(values)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def _add_schema(
    model: type[BaseModel],
    schemas: dict[str, Any],
    mode: Literal["validation", "serialization"],
) -> dict[str, str]:
    schema = model.model_json_schema(ref_template=_REF, mode=mode)
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas.setdefault(model.__name__, schema)
    return {"$ref": _REF.format(model=model.__name__)}


def _path_schema(kind: str) -> dict[str, Any]:
    # integer path parameters are ids (ApiRequest.path_int): 1 to MAX_ID
    if kind == "integer":
        return {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    return {"type": kind}


def _openapi_path(path: str) -> str:
    # aiohttp "{id:\d+}" -> OpenAPI "{id}"
    return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)(:[^}]*)?\}", r"{\1}", path)


def _operation_id(ep: Endpoint) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", _openapi_path(ep.path)).strip("_")
    return f"{ep.method.lower()}_{slug}"
