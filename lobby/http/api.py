"""The REST endpoint registry: validation, authentication, rate limits, OpenAPI.

A service adds an endpoint before the lobby starts serving (in its
``setup(ctx)``)::

    @ctx.api.route("GET", "/api/world/state", response_model=WorldStateOut,
                   summary="World state", tags=("world",))
    async def world_state(req: ApiRequest) -> WorldStateOut:
        session = req.require_session()      # auth=True is the default
        ...

What the wrapper does for every endpoint, in order: authenticate
(``Authorization: Bearer <token>``; the token slides) when ``auth`` is set,
apply the per-account rate limit, read and validate the JSON body against
``request_model`` (400 ``invalid_json``, 422 ``validation_error``; 400
``bad_request`` if it does not arrive within ``http_body_timeout`` seconds) and the query
string against ``query_model``, call the handler, and serialize a returned
pydantic model with ``status``. The handler may also return an aiohttp
response. Every endpoint lands in ``GET /api/openapi.json``.

Every integer an endpoint accepts is bounded: :meth:`Api.add` refuses a request
or query model with an integer field whose ``ge``/``le`` bounds do not fit a
signed 64-bit integer (what SQLite and PostgreSQL ``BIGINT`` hold), so an
out-of-range number is a 422 ``validation_error``, never a database overflow;
integer path parameters (:meth:`ApiRequest.path_int`) are ids from 1 to
:data:`~protocol.messages.base.MAX_ID`, anything else a 404.

A method a path does not have is a 405 whose ``Allow`` lists exactly that path's
methods, also where a templated path would match the same URL: as in OpenAPI, the
concrete path wins (``GET /api/party/accept`` is a 405, not ``GET /api/party/{party_id}``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import hdrs, web
from pydantic import BaseModel, ValidationError

from lobby.characters import Character
from lobby.http.errors import client_address
from lobby.logs import bind_session
from lobby.ratelimit import SharedRateLimiter
from lobby.sessions import Session
from protocol.errors import ErrorCode, LobbyError
from protocol.messages.base import MAX_ID

if TYPE_CHECKING:
    from lobby.context import LobbyContext

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "Api",
    "ApiRequest",
    "Endpoint",
    "EndpointHandler",
    "bearer_token",
    "unbounded_integers",
]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

M = TypeVar("M", bound=BaseModel)

EndpointHandler = Callable[["ApiRequest"], Awaitable[BaseModel | web.StreamResponse]]


@dataclass(slots=True)
class Endpoint:
    """One REST endpoint and what the OpenAPI document says about it."""

    method: str
    path: str
    handler: EndpointHandler
    summary: str = ""
    description: str = ""
    request_model: type[BaseModel] | None = None
    query_model: type[BaseModel] | None = None
    response_model: type[BaseModel] | None = None
    status: int = 200
    auth: bool = True
    admin: bool = False
    """Only for ``admin_accounts`` (403 ``forbidden`` for any other, before the body is read)."""
    tags: tuple[str, ...] = ()
    path_params: dict[str, str] = field(default_factory=dict)
    errors: tuple[int, ...] = ()


@dataclass(slots=True)
class ApiRequest:
    """What a handler receives: the aiohttp request, the context, the validated inputs."""

    request: web.Request
    ctx: LobbyContext
    session: Session | None
    body: BaseModel | None
    query: BaseModel | None
    address: str

    def require_session(self) -> Session:
        if self.session is None:
            raise LobbyError("a session token is required", code=ErrorCode.UNAUTHORIZED)
        return self.session

    async def require_character(self) -> Character:
        """The session's selected character (``NO_CHARACTER`` if none, fresh from the DB)."""
        session = self.require_session()
        if session.character_id is not None:
            character = await self.ctx.characters.get(session.character_id)
            if character is not None and character.account_id == session.account_id:
                return character
        raise LobbyError("select a character first", code=ErrorCode.NO_CHARACTER)

    def body_as(self, model: type[M]) -> M:
        if not isinstance(self.body, model):
            raise TypeError(f"endpoint body is not a {model.__name__}")
        return self.body

    def query_as(self, model: type[M]) -> M:
        if not isinstance(self.query, model):
            raise TypeError(f"endpoint query is not a {model.__name__}")
        return self.query

    def path_int(self, name: str) -> int:
        """An id path parameter, 1 to ``MAX_ID`` (404 otherwise: such an id cannot exist)."""
        raw = self.request.match_info.get(name, "")
        if raw.isascii() and raw.isdigit() and len(raw) <= 19 and 1 <= int(raw) <= MAX_ID:
            return int(raw)
        raise LobbyError(f"no such {name}", code=ErrorCode.NOT_FOUND, details={name: raw[:32]})


def bearer_token(request: web.Request, *, allow_query: bool = False) -> str | None:
    """The token from ``Authorization: Bearer <token>`` (or ``?token=`` if allowed)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if allow_query:
        return request.query.get("token") or None
    return None


class Api:
    """The endpoint list of one lobby, installed on its aiohttp application at start."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []
        self._installed = False
        self._ctx: LobbyContext | None = None
        self._account_limiter: SharedRateLimiter | None = None

    def add(self, endpoint: Endpoint) -> Endpoint:
        """Register ``endpoint`` (before the lobby starts serving)."""
        if self._installed:
            raise RuntimeError("endpoints must be added before the lobby starts serving")
        key = (endpoint.method.upper(), endpoint.path)
        if any((e.method.upper(), e.path) == key for e in self.endpoints):
            raise ValueError(f"endpoint {key[0]} {key[1]} is already registered")
        for model in (endpoint.request_model, endpoint.query_model):
            loose = [] if model is None else unbounded_integers(model.model_json_schema())
            if loose:
                raise ValueError(
                    f"endpoint {key[0]} {key[1]}: {model.__name__ if model else ''} accepts "
                    f"integers without bounds inside a signed 64-bit range: {', '.join(loose)} "
                    f"(add ge=/le=, e.g. le=MAX_ID)"
                )
        endpoint.method = endpoint.method.upper()
        self.endpoints.append(endpoint)
        return endpoint

    def route(
        self, method: str, path: str, **options: Any
    ) -> Callable[[EndpointHandler], EndpointHandler]:
        """Decorator form of :meth:`add` (options are :class:`Endpoint` fields)."""

        def decorate(handler: EndpointHandler) -> EndpointHandler:
            self.add(Endpoint(method=method, path=path, handler=handler, **options))
            return handler

        return decorate

    def install(self, app: web.Application, ctx: LobbyContext) -> None:
        """Add every endpoint's route to ``app``."""
        self._ctx = ctx
        self._account_limiter = SharedRateLimiter(
            "rest_account",
            ctx.settings.rest_rate_per_account,
            ctx.settings.rest_burst_per_account,
            ctx.clock,
            ctx.buckets,
        )
        by_path: dict[str, list[Endpoint]] = {}
        for endpoint in self.endpoints:
            by_path.setdefault(endpoint.path, []).append(endpoint)
        for path, endpoints in by_path.items():
            resource = app.router.add_resource(path)
            for endpoint in endpoints:
                resource.add_route(endpoint.method, self._wrap(endpoint))
            # Any other method on this path is a 405 naming exactly this path's methods,
            # also where a templated path would match it too (OpenAPI: the concrete path
            # wins, so ``GET /api/party/accept`` is not ``GET /api/party/{party_id}``).
            resource.add_route(hdrs.METH_ANY, _not_allowed({e.method for e in endpoints}))
        self._installed = True

    def _wrap(self, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            ctx = self._ctx
            assert ctx is not None and self._account_limiter is not None  # noqa: S101
            session: Session | None = None
            if endpoint.auth:
                session = await ctx.sessions.authenticate(bearer_token(request))
                bind_session(session)  # its ids on this request's log lines
                if endpoint.admin and not session.is_admin:
                    raise LobbyError("for admin accounts only", code=ErrorCode.FORBIDDEN)
                wait = await self._account_limiter.hit(session.account_id)
                if wait > 0:
                    ctx.metrics.rate_limited("rest_account")
                    raise LobbyError(
                        "too many requests for this account",
                        code=ErrorCode.RATE_LIMITED,
                        details={"retry_after": round(wait, 3), "scope": "account"},
                    )
            body = await _read_body(request, endpoint.request_model, ctx.settings.http_body_timeout)
            query = (
                None
                if endpoint.query_model is None
                else _validate(endpoint.query_model, dict(request.query), "query")
            )
            api_request = ApiRequest(
                request=request,
                ctx=ctx,
                session=session,
                body=body,
                query=query,
                address=client_address(
                    request, trust_forwarded_for=ctx.settings.trust_forwarded_for
                ),
            )
            result = await endpoint.handler(api_request)
            if isinstance(result, web.StreamResponse):
                return result
            return web.Response(
                text=result.model_dump_json(),
                status=endpoint.status,
                content_type="application/json",
            )

        return handle


def _not_allowed(methods: set[str]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def not_allowed(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(request.method, sorted(methods))

    return not_allowed


async def _read_body(
    request: web.Request, model: type[BaseModel] | None, deadline: float
) -> BaseModel | None:
    if model is None:
        return None
    try:
        async with asyncio.timeout(deadline):
            raw = await request.read()
    except TimeoutError:
        # a body trickling in (slow POST) would hold the connection and this handler
        raise LobbyError(
            f"the request body did not arrive within {deadline:g}s",
            code=ErrorCode.BAD_REQUEST,
            details={"timeout": deadline},
        ) from None
    if not raw:
        raise LobbyError("a JSON body is required", code=ErrorCode.INVALID_JSON)
    try:
        data = json.loads(raw)
    except RecursionError:
        raise LobbyError(
            "the body is not valid JSON: nested too deeply", code=ErrorCode.INVALID_JSON
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise LobbyError(
            f"the body is not valid JSON: {exc}", code=ErrorCode.INVALID_JSON
        ) from None
    if not isinstance(data, dict):
        raise LobbyError("the body must be a JSON object", code=ErrorCode.INVALID_JSON)
    return _validate(model, data, "body")


def _validate(model: type[BaseModel] | None, data: dict[str, Any], where: str) -> BaseModel | None:
    if model is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"loc": [where, *err["loc"]], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        first = errors[0]
        field_name = ".".join(str(p) for p in first["loc"][1:]) or where
        raise LobbyError(
            f"invalid {where}: {field_name}: {first['msg']}",
            code=ErrorCode.VALIDATION_ERROR,
            details={"errors": errors[:20]},
        ) from None


def unbounded_integers(schema: Any, where: str = "") -> list[str]:
    """The fields where the JSON schema ``schema`` admits integers outside a signed 64-bit range."""
    found: list[str] = []
    if isinstance(schema, list):
        for sub in schema:
            found.extend(unbounded_integers(sub, where))
        return found
    if not isinstance(schema, dict):
        return found
    if schema.get("type") == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if not (isinstance(low, int) and INT64_MIN <= low <= INT64_MAX):
            found.append(f"{where or 'value'} (minimum)")
        if not (isinstance(high, int) and INT64_MIN <= high <= INT64_MAX):
            found.append(f"{where or 'value'} (maximum)")
    for key, sub in schema.items():
        if key in ("properties", "$defs") and isinstance(sub, dict):
            for name, inner in sub.items():
                found.extend(unbounded_integers(inner, f"{where}.{name}" if where else name))
        elif isinstance(sub, dict | list):
            found.extend(unbounded_integers(sub, where))
    return found
