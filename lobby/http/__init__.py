"""The lobby's HTTP side: the endpoint registry, the core routes, errors, OpenAPI, ``/ws``,
and the connection guard in front of them (:mod:`lobby.http.guard`)."""

from __future__ import annotations

from lobby.http.api import Api, ApiRequest, Endpoint, EndpointHandler, bearer_token
from lobby.http.errors import error_response, status_for
from lobby.http.openapi import build_openapi

__all__ = [
    "Api",
    "ApiRequest",
    "Endpoint",
    "EndpointHandler",
    "bearer_token",
    "build_openapi",
    "error_response",
    "status_for",
]
