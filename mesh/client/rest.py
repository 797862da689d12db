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
* a call that needs a login before :meth:`LobbyRest.login`:
  :class:`~protocol.errors.NotConnectedError`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp

from protocol.errors import ApiError, ErrorCode, MeshConfigError, NotConnectedError

__all__ = ["LobbyRest"]

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
            raise ApiError(
                f"the lobby at {self.base_url} is unreachable: {exc or type(exc).__name__}",
                code=ErrorCode.UNAVAILABLE,
                status=0,
            ) from exc
        try:
            data = json.loads(text) if text else None
        except ValueError as exc:
            raise ApiError(
                f"{method} {path}: the lobby answered {status} with a body that is not JSON",
                code=ErrorCode.UNAVAILABLE if status >= 500 else ErrorCode.BAD_REQUEST,
                status=status,
            ) from exc
        if status >= 400:
            raise _api_error(method, path, status, data)
        return data

    async def get(
        self, path: str, *, auth: bool = True, params: dict[str, str] | None = None
    ) -> Any:
        return await self.request("GET", path, auth=auth, params=params)

    async def post(self, path: str, body: Any = None, *, auth: bool = True) -> Any:
        return await self.request("POST", path, body if body is not None else {}, auth=auth)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)


def _api_error(method: str, path: str, status: int, data: Any) -> ApiError:
    code = ErrorCode.INTERNAL_ERROR if status >= 500 else ErrorCode.BAD_REQUEST
    message = f"{method} {path} failed with HTTP {status}"
    details: dict[str, Any] = {}
    if isinstance(data, dict):
        raw_code = data.get("code")
        try:
            code = ErrorCode(str(raw_code))
        except ValueError:
            if raw_code is not None:
                details["code"] = raw_code
        if isinstance(data.get("message"), str):
            message = data["message"]
        if isinstance(data.get("details"), dict):
            details.update(data["details"])
    return ApiError(message, code=code, status=status, details=details)
