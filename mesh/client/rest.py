"""The lobby's REST API as seen by a client: one aiohttp session, errors translated.

:class:`LobbyRest` sends JSON requests with the session's bearer token and
returns the decoded JSON body. Every failure is a
:class:`~protocol.errors.MeshError` subclass:

* the lobby answered with an error body (``{"code", "message", "details"}``):
  :class:`~protocol.errors.ApiError` with ``status`` (HTTP) and ``code``
  (:class:`~protocol.errors.ErrorCode`) taken from the body;
* the lobby could not be reached, timed out or answered something that is not
  JSON: :class:`~protocol.errors.ApiError` with ``status=0`` and
  ``code=ErrorCode.UNAVAILABLE`` (the aiohttp error is chained);
* an answer that does not match the expected body (:mod:`protocol.rest`, with
  :meth:`LobbyRest.call`): :class:`~protocol.errors.ApiError` with the HTTP
  status and ``code=ErrorCode.UNAVAILABLE``;
* a call that needs a login before the token is set:
  :class:`~protocol.errors.NotConnectedError`.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from protocol.errors import ApiError, DecodeError, ErrorCode, MeshConfigError, NotConnectedError
from protocol.rest import ErrorBody, parse_body

__all__ = ["LobbyRest", "api_error", "read_body", "unreachable"]

M = TypeVar("M", bound=BaseModel)

logger = logging.getLogger("mesh.client")


class LobbyRest:
    """REST calls against one lobby (``base_url`` like ``http://127.0.0.1:8888``)."""

    def __init__(self, base_url: str, *, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token: str | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared aiohttp session (created on first use, inside the running loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    @property
    def ws_url(self) -> str:
        """The WebSocket URL of the lobby (``ws://.../ws`` or ``wss://.../ws``)."""
        if self.base_url.startswith("https://"):
            return "wss://" + self.base_url[len("https://") :] + "/ws"
        if self.base_url.startswith("http://"):
            return "ws://" + self.base_url[len("http://") :] + "/ws"
        raise MeshConfigError(
            f"server_url must start with http:// or https://, got {self.base_url!r}"
        )

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <token>``; raises NotConnectedError before login."""
        if self.token is None:
            raise NotConnectedError("not logged in: call connect() first")
        return {"Authorization": f"Bearer {self.token}"}

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        params: dict[str, str] | None = None,
    ) -> Any:
        """One JSON request; returns the decoded body or raises :class:`ApiError`."""
        headers = self.auth_headers() if auth else {}
        url = self.base_url + path
        try:
            async with self.session.request(
                method, url, json=body, headers=headers, params=params
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise unreachable(f"the lobby at {self.base_url}", exc) from exc
        try:
            data = json.loads(text) if text else None
        except ValueError as exc:
            raise ApiError(
                f"{method} {path}: the lobby answered {status} with a body that is not JSON",
                code=ErrorCode.UNAVAILABLE if status >= 500 else ErrorCode.BAD_REQUEST,
                status=status,
            ) from exc
        if status >= 400:
            raise api_error(method, path, status, data)
        return data

    async def call(
        self,
        model: type[M],
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        params: dict[str, str] | None = None,
    ) -> M:
        """One request whose answer is a ``model`` body (:mod:`protocol.rest`)."""
        if body is None and method != "GET":
            body = {}
        data = await self.request(method, path, body, auth=auth, params=params)
        return read_body(model, data, what=f"{method} {path}")

    async def get(
        self, path: str, *, auth: bool = True, params: dict[str, str] | None = None
    ) -> Any:
        return await self.request("GET", path, auth=auth, params=params)

    async def post(self, path: str, body: Any = None, *, auth: bool = True) -> Any:
        return await self.request("POST", path, body if body is not None else {}, auth=auth)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)


def read_body(model: type[M], data: object, *, what: str) -> M:
    """``data`` (a decoded answer) as ``model``; :class:`ApiError` ``unavailable`` if it is not."""
    try:
        return parse_body(model, data, what=what)
    except DecodeError as exc:
        raise ApiError(str(exc), code=ErrorCode.UNAVAILABLE) from exc


def unreachable(what: str, exc: BaseException) -> ApiError:
    """The error for ``what`` (the lobby, its WebSocket) not answering: ``unavailable``."""
    return ApiError(
        f"{what} is unreachable ({exc or type(exc).__name__}); is the lobby running "
        "there? (server_url, or SHARDS_SERVER_URL in the environment)",
        code=ErrorCode.UNAVAILABLE,
        status=0,
    )


def api_error(method: str, path: str, status: int, data: Any) -> ApiError:
    """The :class:`ApiError` of an error answer: an :class:`ErrorBody`, or what is usable.

    A code this client does not know becomes ``bad_request`` (``internal_error``
    for 5xx) with the lobby's code kept in ``details["code"]``.
    """
    fallback = ErrorCode.INTERNAL_ERROR if status >= 500 else ErrorCode.BAD_REQUEST
    extra: dict[str, Any] = {}
    if isinstance(data, dict) and data.get("code") not in set(ErrorCode):
        if data.get("code") is not None:
            extra["code"] = data["code"]
        data = {**data, "code": fallback}
    try:
        body = ErrorBody.model_validate(data)
    except ValidationError:
        return ApiError(
            f"{method} {path} failed with HTTP {status}",
            code=fallback,
            status=status,
            details=extra,
        )
    return ApiError(body.message, code=body.code, status=status, details={**body.details, **extra})
