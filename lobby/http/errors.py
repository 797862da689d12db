"""HTTP error bodies and the middlewares that produce them.

Every error answer is JSON ``{"code": <ErrorCode>, "message": "...", "details": {...}}``
with the status :func:`status_for` gives the code. 429 and 503 answers carry
``Retry-After`` (whole seconds) from ``details.retry_after`` when it is set; 405
answers carry ``Allow``. aiohttp's own HTTP errors (unknown route, wrong method,
body over the size limit) get the same shape; an unexpected exception is logged
once and answered 500 ``internal_error`` without internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from lobby.ratelimit import SharedRateLimiter, retry_after_header
from protocol.errors import ErrorCode, ShardsError

__all__ = [
    "STATUS_BY_CODE",
    "client_address",
    "error_middleware",
    "error_response",
    "rate_limit_middleware",
    "status_for",
]

log = logging.getLogger("lobby.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.INVALID_MESSAGE: 400,
    ErrorCode.UNKNOWN_TYPE: 400,
    ErrorCode.VERSION_MISMATCH: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.SESSION_EXPIRED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NO_CHARACTER: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.USERNAME_TAKEN: 409,
    ErrorCode.NAME_TAKEN: 409,
    ErrorCode.CHARACTER_LIMIT: 409,
    ErrorCode.MESSAGE_TOO_LARGE: 413,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.INVALID_NAME: 422,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.ACCOUNT_LOCKED: 429,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.UNAVAILABLE: 503,
}
"""HTTP status of each error code; codes not listed (game rules) answer 409."""

_CODE_BY_STATUS: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.UNAVAILABLE,
}


def status_for(code: ErrorCode) -> int:
    """The HTTP status for ``code`` (409 for a refused game rule)."""
    return STATUS_BY_CODE.get(code, 409)


def error_response(
    code: ErrorCode,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    status: int | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A JSON error answer with the status of ``code`` (and Retry-After on 429 and 503)."""
    status = status or status_for(code)
    headers = dict(headers or {})
    retry = (details or {}).get("retry_after")
    if status in (429, 503) and isinstance(retry, int | float):
        headers["Retry-After"] = retry_after_header(float(retry))
    body = {"code": code.value, "message": message, "details": details or {}}
    return web.json_response(body, status=status, headers=headers)


def client_address(request: web.Request, *, trust_forwarded_for: bool = False) -> str:
    """The client's address: the peer address, or X-Forwarded-For's first hop if trusted."""
    if trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first[:64]
    return request.remote or "unknown"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the JSON error shape."""
    try:
        return await handler(request)
    except ShardsError as exc:
        return error_response(exc.code, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _CODE_BY_STATUS.get(exc.status, ErrorCode.BAD_REQUEST)
        message = exc.reason
        details: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if exc.status == 405:
            message = f"method {request.method} not allowed on {request.path}"
            allowed = sorted(getattr(exc, "allowed_methods", ()))
            details["allowed"] = allowed
            headers["Allow"] = ", ".join(allowed)
        elif exc.status == 404:
            message = f"no endpoint {request.path}"
        elif exc.status == 413:
            message = "request body too large"
        return error_response(code, message, details, status=exc.status, headers=headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ErrorCode.INTERNAL_ERROR, "internal error")


def rate_limit_middleware(
    limiter: SharedRateLimiter,
    *,
    trust_forwarded_for: bool,
    on_refused: Callable[[], None] | None = None,
) -> Middleware:
    """Per source address request limit (every request, before routing; one budget for
    every lobby process of a cluster); ``on_refused`` is called for each refusal (metrics)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        address = client_address(request, trust_forwarded_for=trust_forwarded_for)
        wait = await limiter.hit(address)
        if wait > 0:
            if on_refused is not None:
                on_refused()
            return error_response(
                ErrorCode.RATE_LIMITED,
                "too many requests from this address",
                {"retry_after": round(wait, 3), "scope": "address"},
            )
        return await handler(request)

    return middleware
